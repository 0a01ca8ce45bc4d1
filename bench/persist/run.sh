#!/usr/bin/env bash
# bench/persist/run.sh — durable map throughput, relaxed mode, recovery and
# snapshot size, side by side with Redis 7 on the same disk (bench/README.md
# "## Persistence").
#   bench/persist/run.sh [--smoke] [--rows N] [--tail N] [--seconds S]
#   --smoke: a seconds-long run (100k rows, ICS_BENCH_ROWS overrides)
#   --parts "disk map server relaxed recovery": a subset (default all)
# Env: ICS_BUILD_DIR (default build/release). Data goes to a fresh
# directory under ${TMPDIR:-/tmp} (the disk being measured) and is removed.
set -euo pipefail
cd "$(dirname "$0")/../.."
SMOKE=0 ROWS="" TAIL="" SECS="" PARTS="disk map server relaxed recovery"
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --rows) ROWS=$2; shift ;;
    --tail) TAIL=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    *) echo "usage: $0 [--smoke] [--rows N] [--tail N] [--seconds S] [--parts LIST]" >&2; exit 2 ;;
  esac
  shift
done
if [ $SMOKE = 1 ]; then
  ROWS=${ROWS:-${ICS_BENCH_ROWS:-100000}}; SECS=${SECS:-1}; ROUNDS=1
else
  ROWS=${ROWS:-10000000}; SECS=${SECS:-5}; ROUNDS=${ROUNDS:-3}
fi
TAIL=${TAIL:-$(( ROWS / 10 ))}
BUILD=${ICS_BUILD_DIR:-build/release}
BP=$BUILD/bench/persist/bench_persist
if [ ! -x "$BP" ]; then
  echo "run.sh: building bench_persist in $BUILD"
  [ -f "$BUILD/build.ninja" ] || scripts/build.sh "$(basename "$BUILD")" >/dev/null
  cmake --build "$BUILD" -j2 --target bench_persist >/dev/null
fi
for t in redis-server redis-cli redis-benchmark; do
  command -v $t >/dev/null || { echo "run.sh: $t missing (apt-get install redis-server redis-tools)"; exit 77; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ics-persistbench-XXXXXX")
RPID=""
IPID=""
cleanup() {
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
  [ -n "$IPID" ] && kill "$IPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

# Redis on loopback, a random port in 20000-60000 (retried), its own dir.
redis_start() { # name, extra redis-server args...
  local name=$1; shift
  mkdir -p "$TMP/$name"
  for _ in $(seq 20); do
    RPORT=$(( 20000 + RANDOM % 40000 ))
    redis-server --port $RPORT --bind 127.0.0.1 --dir "$TMP/$name" --save "" \
      --logfile "$TMP/$name/log" --daemonize no "$@" &
    RPID=$!
    for _ in $(seq 100); do
      redis-cli -p $RPORT ping >/dev/null 2>&1 && return 0
      kill -0 $RPID 2>/dev/null || break
      sleep 0.05
    done
    kill $RPID 2>/dev/null || true; wait $RPID 2>/dev/null || true; RPID=""
  done
  echo "run.sh: redis-server would not start"; exit 1
}
redis_stop() { redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1 || true; wait $RPID 2>/dev/null || true; RPID=""; }
kv() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
redis_set_rate() { # clients, requests
  redis-benchmark -p $RPORT -t set -c "$1" -n "$2" -r 100000000 -d 36 --csv 2>/dev/null |
    awk -F'"' '/"SET"/ { print $4 }'
}
ROWS_OUT=()
row() { ROWS_OUT+=("$(printf '| %-46s | %12s | %12s | %7s |' "$1" "$2" "$3" "$4")"); }

echo "persist bench: rows=$ROWS tail=$TAIL seconds=$SECS dir=$TMP"
want() { [[ " $PARTS " == *" $1 "* ]]; }
# 1. The disk itself.
DSYNC=0
if want disk || want map; then
  D=$("$BP" dsync --dir "$TMP" --seconds "$SECS"); echo "$D"
  DSYNC=$(echo "$D" | kv writes_per_s)
fi

# 2. Durable maps vs Redis appendfsync always, 1/16/64 writers.
if want map; then
redis_start always --appendonly yes --appendfsync always
# The disk's speed drifts (a shared VM): each side is measured ROUNDS times,
# alternating, and the medians are compared.
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for N in 1 16 64; do
  OURS_L="" RED_L="" SYNC_L=""
  for _ in $(seq $ROUNDS); do
    mkdir -p "$TMP/m$N"
    M=$("$BP" map --dir "$TMP/m$N" --writers $N --seconds "$SECS"); echo "$M"
    O=$(echo "$M" | kv changes_per_s); OURS_L+="$O\n"; SYNC_L+="$(echo "$M" | kv changes_per_sync)\n"
    REQ=$(awk -v r="$O" -v s="$SECS" -v n=$N 'BEGIN { x = int(r * s / 2); if (x < 20 * n) x = 20 * n; print x }')
    R=$(redis_set_rate $N "$REQ"); echo "redis appendfsync=always clients=$N requests=$REQ set_per_s=$R"
    RED_L+="$R\n"
    rm -rf "$TMP/m$N"
  done
  OURS=$(printf "$OURS_L" | median); RED=$(printf "$RED_L" | median); PERSYNC=$(printf "$SYNC_L" | median)
  row "durable map, $N writer(s) (changes/s; per fsync $PERSYNC)" "$OURS" "$RED" "$(ratio "$OURS" "$RED")x"
  [ $N = 1 ] && row "1 writer vs raw O_DSYNC 4 KiB writes/s" "$OURS" "$DSYNC (disk)" "$(ratio "$OURS" "$DSYNC")x"
done
redis_stop
fi

# 2b. The same through the server, as Redis is measured: icsd (default
#     durability sync, its data on this disk) driven over loopback by
#     ics-loadgen, N connections each with one MAP in flight (--op mix
#     --read-pct 0: every request a durable map of a random row), against
#     redis-benchmark SET with N clients. A connection's acknowledgement is
#     the worker's reply after the group's fdatasync, so the hand-off is one
#     mailbox post per worker per batch instead of one thread wake per
#     writer (bench_persist map, above): what a provider sees.
if want server; then
if [ ! -x "$BUILD/server/icsd" ] || [ ! -x "$BUILD/bench/net/ics-loadgen" ]; then
  cmake --build "$BUILD" -j2 --target icsd ics-loadgen >/dev/null
fi
redis_start always2 --appendonly yes --appendfsync always
mkdir -p "$TMP/srv"
"$BUILD/server/icsd" --data "$TMP/srv" --port 0 --port-file "$TMP/srv.port" --log-level warn \
  2>>"$TMP/srv.log" &
IPID=$!
for _ in $(seq 200); do [ -s "$TMP/srv.port" ] && break; sleep 0.05; done
IPORT=$(cat "$TMP/srv.port"); ISEC=$(sed -n 's/^secret=//p' "$TMP/srv/admin.cred")
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for N in 1 16 64; do
  OURS_L="" RED_L=""
  for _ in $(seq $ROUNDS); do
    M=$("$BUILD/bench/net/ics-loadgen" --port "$IPORT" --user admin --secret "$ISEC" --op mix \
        --read-pct 0 --keys 10000000 --conns $N --depth 1 --duration "$SECS" --label "icsd_map_$N")
    echo "$M"
    O=$(echo "$M" | kv ops_per_s); OURS_L+="$O\n"
    REQ=$(awk -v r="$O" -v s="$SECS" -v n=$N 'BEGIN { x = int(r * s / 2); if (x < 20 * n) x = 20 * n; print x }')
    R=$(redis_set_rate $N "$REQ"); echo "redis appendfsync=always clients=$N requests=$REQ set_per_s=$R"
    RED_L+="$R\n"
  done
  OURS=$(printf "$OURS_L" | median); RED=$(printf "$RED_L" | median)
  row "durable map via the server, $N connection(s)" "$OURS" "$RED" "$(ratio "$OURS" "$RED")x"
done
kill -TERM $IPID; wait $IPID 2>/dev/null || true; IPID=""
redis_stop
fi

# 3. Relaxed (acknowledged before the sync, synced within 10 ms) vs everysec.
if want relaxed; then
redis_start everysec --appendonly yes --appendfsync everysec
mkdir -p "$TMP/rx"
M=$("$BP" map --dir "$TMP/rx" --writers 16 --seconds "$SECS" --relaxed); echo "$M"
OURS=$(echo "$M" | kv changes_per_s)
REQ=$(awk -v r="$OURS" -v s="$SECS" 'BEGIN { x = int(r * s / 2); if (x < 1000) x = 1000; print x }')
RED=$(redis_set_rate 16 "$REQ"); echo "redis appendfsync=everysec clients=16 set_per_s=$RED"
row "relaxed map vs appendfsync everysec, 16 writers" "$OURS" "$RED" "$(ratio "$OURS" "$RED")x"
rm -rf "$TMP/rx"
redis_stop
fi

# 4. Recovery and snapshot size: the same rows in both (36-byte device IDs
#    and UTIs, 28-byte URIs, 2 rows per device); Redis as a user would store
#    them: a HASH per device, a STRING per binding.
if want recovery; then
redis_start rdb --appendonly no --dbfilename dump.rdb
"$BP" build --dir "$TMP/rec" --rows "$ROWS" --tail "$TAIL" --redis 2>"$TMP/build.txt" |
  redis-cli -p $RPORT --pipe >"$TMP/pipe.txt"
cat "$TMP/build.txt"; tail -1 "$TMP/pipe.txt"
SNAPB=$(kv snapshot_bytes_per_row <"$TMP/build.txt")
redis-cli -p $RPORT save >/dev/null
RDB=$(stat -c %s "$TMP/rdb/dump.rdb")
redis_stop
RDBROW=$(awk -v b="$RDB" -v r=$(( ROWS + TAIL )) 'BEGIN { printf "%.1f", b / r }')
echo "redis rdb_bytes=$RDB rdb_bytes_per_row=$RDBROW"
# ROUNDS alternating rounds (Redis loads, then icsd recovers: as built,
# presized, and without huge pages); the medians are compared, so that load
# from other processes hits both alike.
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }
: >"$TMP/rr"; : >"$TMP/r1"; : >"$TMP/r2"; : >"$TMP/r3"
for round in $(seq "$ROUNDS"); do
  : >"$TMP/rdb/log"
  redis_start rdb --appendonly no --dbfilename dump.rdb
  for _ in $(seq 6000); do grep -q "DB loaded from disk" "$TMP/rdb/log" && break; sleep 0.1; done
  RLOAD=$(sed -n 's/.*DB loaded from disk: \([0-9.]*\) seconds.*/\1/p' "$TMP/rdb/log" | tail -1)
  redis_stop
  awk -v r=$(( ROWS + TAIL )) -v s="$RLOAD" 'BEGIN { if (s > 0) printf "%.0f\n", r / s; else print 0 }' >>"$TMP/rr"
  R1=$("$BP" recover --dir "$TMP/rec"); echo "round $round: $R1"
  R2=$("$BP" recover --dir "$TMP/rec" --initial $(( (ROWS + TAIL) / 2 ))); echo "round $round: $R2 (engine presized)"
  R3=$(MALLOC_CONF=thp:never,metadata_thp:disabled "$BP" recover --dir "$TMP/rec"); echo "round $round: $R3 (no huge pages)"
  echo "round $round: redis rows_per_s=$(tail -1 "$TMP/rr")"
  echo "$R1" | kv rows_per_s >>"$TMP/r1"; echo "$R2" | kv rows_per_s >>"$TMP/r2"; echo "$R3" | kv rows_per_s >>"$TMP/r3"
done
RRATE=$(med <"$TMP/rr"); M1=$(med <"$TMP/r1"); M2=$(med <"$TMP/r2"); M3=$(med <"$TMP/r3")
echo "redis rows_per_s median=$RRATE"
row "recovery rows/s (snapshot + $TAIL-record log)" "$M1" "$RRATE" "$(ratio "$M1" "$RRATE")x"
row "recovery rows/s, engine presized" "$M2" "$RRATE" "$(ratio "$M2" "$RRATE")x"
row "recovery rows/s, no huge pages (thp:never)" "$M3" "$RRATE" "$(ratio "$M3" "$RRATE")x"
row "snapshot bytes/row vs RDB bytes/row" "$SNAPB" "$RDBROW" "$(ratio "$SNAPB" "$RDBROW")x"
fi

echo
printf '| %-46s | %12s | %12s | %7s |\n' figure icsd redis ratio
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "--------------" "--------------" "---------"
for r in "${ROWS_OUT[@]}"; do echo "$r"; done

#!/usr/bin/env bash
# bench/tls/ab.sh — two icsd builds over TLS, alternating, in one run: for a
# change to the TLS path (bench/README.md, section TLS: the gathered send).
#
# Starts icsd A and icsd B (each --threads 1 on core 0, only one under load
# at a time) with the same certificates and preloaded rows, then alternates
# ics-loadgen runs (core 1) over TLS against A and B, the order flipping each
# round, and compares the best and the median of each: ops/s and server
# CPU per inquiry (on a shared machine one lucky or unlucky run moves the
# best a lot; the median less).
#
# Usage: bench/tls/ab.sh ICSD_A ICSD_B [--rounds N] [--seconds N] [--keys N]
#        [--rows R] [--depth D] [--conns N] [--plain]
#   --rows R: R rows per device (an inquiry answers R rows; 64 rows x depth
#             16 is ~50 KiB per pipelined burst, more than one 32 KiB piece)
#   --plain:  the plaintext port instead of TLS
# Env: ICS_BUILD_DIR (default build/release) holds bench/net/ics-loadgen.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ $# -ge 2 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$(realpath "$1") B=$(realpath "$2"); shift 2
ROUNDS=5 SECS=3 KEYS=2000 ROWS=64 DEPTH=16 CONNS=1 PLAIN=0
while [ $# -gt 0 ]; do
  case $1 in
    --rounds)  ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --keys)    KEYS=$2; shift 2 ;;
    --rows)    ROWS=$2; shift 2 ;;
    --depth)   DEPTH=$2; shift 2 ;;
    --conns)   CONNS=$2; shift 2 ;;
    --plain)   PLAIN=1; shift ;;
    *) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
BUILD=${ICS_BUILD_DIR:-$ROOT/build/release}
LG=$BUILD/bench/net/ics-loadgen
[ -x "$LG" ] || { echo "ab.sh: $LG not built: skipped"; exit 77; }
NCPU=$(nproc)
SCORE=0 CCORE=$(( NCPU > 1 ? 1 : 0 ))
WORK=$(mktemp -d /tmp/ics_tls_ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
"$ROOT/scripts/mkcerts.sh" "$WORK/certs" admin >/dev/null

declare -A PID PORT TPORT SECRET
for who in A B; do
  bin=$A; [ $who = B ] && bin=$B
  mkdir -p "$WORK/$who"
  taskset -c "$SCORE" "$bin" --data "$WORK/$who/data" --port 0 --port-file "$WORK/$who/port" \
    --threads 1 --log-level warn --tls-port 0 --tls-cert "$WORK/certs/server.pem" \
    --tls-key "$WORK/certs/server.key" --tls-ca "$WORK/certs/ca.pem" 2>>"$WORK/$who/log" &
  PID[$who]=$!; PIDS+=("$!")
  for _ in $(seq 200); do grep -q '^tls=' "$WORK/$who/port" 2>/dev/null && break; sleep 0.05; done
  grep -q '^tls=' "$WORK/$who/port" || { echo "ab.sh: icsd $who did not start: $(cat "$WORK/$who/log")" >&2; exit 1; }
  PORT[$who]=$(head -1 "$WORK/$who/port")
  TPORT[$who]=$(sed -n 's/^tls=//p' "$WORK/$who/port")
  SECRET[$who]=$(sed -n 's/^secret=//p' "$WORK/$who/data/admin.cred")
  taskset -c "$CCORE" "$LG" --port "${PORT[$who]}" --user admin --secret "${SECRET[$who]}" \
    --keys "$KEYS" --preload "$KEYS" --rows "$ROWS" --preload-only
done
args_for() { # who
  if [ $PLAIN = 1 ]; then echo --port "${PORT[$1]}" --user admin --secret "${SECRET[$1]}"
  else echo --port "${TPORT[$1]}" --tls --cert "$WORK/certs/admin.pem" --key "$WORK/certs/admin.key" --ca "$WORK/certs/ca.pem"; fi
}
echo "== ab: A=$A B=$B, $( [ $PLAIN = 1 ] && echo plaintext || echo TLS ), depth $DEPTH x $CONNS conn," \
     "$KEYS devices x $ROWS rows, $ROUNDS rounds of ${SECS}s"
echo "load average before: $(cat /proc/loadavg)"
RES=$WORK/results
for who in A B; do # warm-up, discarded
  # shellcheck disable=SC2046
  taskset -c "$CCORE" "$LG" $(args_for $who) --keys "$KEYS" --depth "$DEPTH" --duration 1 >/dev/null
done
for r in $(seq "$ROUNDS"); do
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  for who in $order; do
    # shellcheck disable=SC2046
    taskset -c "$CCORE" "$LG" $(args_for $who) --keys "$KEYS" --depth "$DEPTH" --conns "$CONNS" \
      --duration "$SECS" --server-pid "${PID[$who]}" --label "$who" | tee -a "$RES"
  done
done
echo "load average after: $(cat /proc/loadavg)"
python3 - "$RES" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
    runs.setdefault(f[0], []).append((float(kv["ops_per_s"]), float(kv["server_cpu_us_per_op"])))
def summary(who):
    ops = [r[0] for r in runs[who]]
    cpu = [r[1] for r in runs[who] if r[1] > 0] or [float("nan")]
    return max(ops), min(cpu), statistics.median(ops), statistics.median(cpu)
a, b = summary("A"), summary("B")
print(f"A: best {a[0]:.0f} ops/s {a[1]:.2f} us cpu/op, median {a[2]:.0f} ops/s {a[3]:.2f} us cpu/op")
print(f"B: best {b[0]:.0f} ops/s {b[1]:.2f} us cpu/op, median {b[2]:.0f} ops/s {b[3]:.2f} us cpu/op")
print(f"ratio B/A: best ops/s {b[0] / a[0]:.2f}x, server cpu/inquiry {b[1] / a[1]:.2f}x; "
      f"median ops/s {b[2] / a[2]:.2f}x, server cpu/inquiry {b[3] / a[3]:.2f}x")
PY

#!/usr/bin/env bash
# bench/net/run.sh — icsd against memcached over the network, side by side
# (bench/README.md "## Network"). Server pinned to core 0, client to core 1.
#   bench/net/run.sh [--smoke]      --smoke: a seconds-long run
# Env: ICS_BUILD or ICS_BUILD_DIR (CI; default build/release), KEYS or
# ICS_BENCH_ROWS (CI), DURATION, CONNS (the many-connection runs, 16),
# ICSD_ARGS (more icsd flags, e.g. "--busy-poll-us 50"), RING (the
# generator's ring: plain, the default, or coop; see ics-loadgen --ring).
set -euo pipefail
cd "$(dirname "$0")/../.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
BUILD=${ICS_BUILD:-${ICS_BUILD_DIR:-build/release}}
if [ ! -x "$BUILD/server/icsd" ] || [ ! -x "$BUILD/bench/net/ics-loadgen" ]; then
  echo "run.sh: building icsd and ics-loadgen in $BUILD"
  [ -f "$BUILD/build.ninja" ] || scripts/build.sh "$(basename "$BUILD")" >/dev/null
  cmake --build "$BUILD" -j2 --target icsd ics-loadgen >/dev/null
fi
ICSD=$BUILD/server/icsd
LG=$BUILD/bench/net/ics-loadgen
if [ $SMOKE = 1 ]; then DUR=${DURATION:-2}; KEYS=${KEYS:-${ICS_BENCH_ROWS:-10000}}
else DUR=${DURATION:-10}; KEYS=${KEYS:-${ICS_BENCH_ROWS:-100000}}; fi
CONNS=${CONNS:-16}
NCPU=$(nproc)
SCORE=0 CCORE=$(( NCPU > 1 ? 1 : 0 ))
TMP=$(mktemp -d /tmp/ics-netbench-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

start_icsd() { # extra args...
  rm -f "$TMP/port"
  # shellcheck disable=SC2086 # ICSD_ARGS: words on purpose
  taskset -c $SCORE "$ICSD" --data "$TMP/data" --port 0 --port-file "$TMP/port" --threads 1 \
    --log-level warn ${ICSD_ARGS:-} "$@" 2>>"$TMP/icsd.log" &
  ICSD_PID=$!; PIDS+=($ICSD_PID)
  for _ in $(seq 200); do [ -s "$TMP/port" ] && break; sleep 0.05; done
  ICS_PORT=$(cat "$TMP/port")
  SECRET=$(sed -n 's/^secret=//p' "$TMP/data/admin.cred")
}
stop_icsd() { kill -TERM "$ICSD_PID"; wait "$ICSD_PID" || true; }

# memcached on a free port (20000-60000): a port that looked free can be
# taken before memcached binds it, so a memcached that is not listening
# 0.3 s later is replaced on another port (5 tries).
MCUSER=(); [ "$(id -u)" = 0 ] && MCUSER=(-u root)
MC_PORT=0
for _ in $(seq 5); do
  p=$(( 20000 + RANDOM % 40000 ))
  ss -ltn 2>/dev/null | grep -q ":$p " && continue
  taskset -c $SCORE memcached "${MCUSER[@]}" -t 1 -p $p -U 0 -l 127.0.0.1 &
  MC_PID=$!; PIDS+=($MC_PID)
  sleep 0.3
  if kill -0 $MC_PID 2>/dev/null && ss -ltn 2>/dev/null | grep -q "127.0.0.1:$p "; then MC_PORT=$p; break; fi
  kill $MC_PID 2>/dev/null || true
done
[ $MC_PORT != 0 ] || { echo "run.sh: memcached did not start (5 ports tried)" >&2; exit 1; }

start_icsd
AUTH=(--user admin --secret "$SECRET")
run() { taskset -c $CCORE "$LG" --keys "$KEYS" --duration "$DUR" --ring "${RING:-plain}" "$@"; }

echo "# preload: $KEYS rows into icsd (MAP, durable) and memcached (SET of the encoded rows)"
run --port "$ICS_PORT" "${AUTH[@]}" --preload "$KEYS" --preload-only
run --port "$MC_PORT" --memcached --op get --preload "$KEYS" --preload-only

RES=$TMP/results
for d in 1 16; do
  run --port "$ICS_PORT" "${AUTH[@]}" --depth $d --server-pid $ICSD_PID --label "icsd_inquire_d$d" | tee -a $RES
  run --port "$ICS_PORT" "${AUTH[@]}" --op get --depth $d --server-pid $ICSD_PID --label "icsd_get_d$d" | tee -a $RES
  run --port "$MC_PORT" --memcached --op get --depth $d --server-pid $MC_PID --label "memcached_get_d$d" | tee -a $RES
done
# The same with many connections (CONNS, default 16: a server faces many
# providers at once): per-op cost shows what batching completions across
# connections in one io_uring_enter saves next to memcached's epoll loop.
# Closed loop, each server gets as much as it answers; then both at the
# same offered load (--rate: 80% of what memcached answered), which is how
# the CPU-per-inquiry target is stated.
for d in 1 16; do
  run --port "$ICS_PORT" "${AUTH[@]}" --conns $CONNS --depth $d --server-pid $ICSD_PID --label "icsd_inquire_d${d}x$CONNS" | tee -a $RES
  run --port "$MC_PORT" --memcached --op get --conns $CONNS --depth $d --server-pid $MC_PID --label "memcached_get_d${d}x$CONNS" | tee -a $RES
  rate=$(sed -n "s/^memcached_get_d${d}x$CONNS .*ops_per_s=\([0-9]*\).*/\1/p" $RES | tail -1)
  rate=$(( ${rate:-10000} * 8 / 10 ))
  run --port "$ICS_PORT" "${AUTH[@]}" --conns $CONNS --depth $d --rate $rate --server-pid $ICSD_PID --label "icsd_inquire_d${d}x${CONNS}_rate" | tee -a $RES
  run --port "$MC_PORT" --memcached --op get --conns $CONNS --depth $d --rate $rate --server-pid $MC_PID --label "memcached_get_d${d}x${CONNS}_rate" | tee -a $RES
done
run --port "$ICS_PORT" "${AUTH[@]}" --op binding --depth 1 --server-pid $ICSD_PID --label icsd_binding_d1 | tee -a $RES
run --port "$ICS_PORT" "${AUTH[@]}" --op mix --read-pct 95 --depth 16 --conns 4 --server-pid $ICSD_PID --label icsd_mix95_d16x4 | tee -a $RES

# memcaslap -B get-only against both (icsd with an anonymous principal).
if command -v memcaslap >/dev/null; then
  python3 - "$ICS_PORT" "$SECRET" <<'PY'
import socket, struct, sys
port, secret = int(sys.argv[1]), sys.argv[2].encode()
s = socket.create_connection(("127.0.0.1", port))
def req(op, key=b"", val=b""):
    return struct.pack(">BBHBBHIIQ", 0x80, op, len(key), 0, 0, 0, len(key) + len(val), 0, 0) + key + val
def rd():
    h = b""
    while len(h) < 24: h += s.recv(24 - len(h))
    n = struct.unpack(">I", h[8:12])[0]; b = b""
    while len(b) < n: b += s.recv(n - len(b))
    return struct.unpack(">H", h[6:8])[0]
s.sendall(req(0x21, b"PLAIN", b"\0admin\0" + secret)); assert rd() == 0
val = bytes([1]) + struct.pack(">H", 0) + struct.pack(">H", 0) + struct.pack(">H", 0)
s.sendall(req(0xD7, b"bench", val)); assert rd() == 0
PY
  stop_icsd
  start_icsd --anonymous bench
  printf 'key\n64 64 1\nvalue\n64 64 1\ncmd\n0 0.0\n1 1.0\n' > "$TMP/getonly.cfg"
  for who in icsd memcached; do
    port=$ICS_PORT; [ $who = memcached ] && port=$MC_PORT
    out=$(taskset -c $CCORE memcaslap -s 127.0.0.1:$port -B -F "$TMP/getonly.cfg" -t ${DUR}s -T 1 -c 16 2>&1 || true)
    tps=$(grep -E '^Run time' <<<"$out" | sed -E 's/.*TPS: ([0-9]+).*/\1/' | tail -1)
    echo "memcaslap_B_getonly_$who tps=${tps:-?}" | tee -a $RES
  done
fi
stop_icsd

echo
echo "# ratios icsd / memcached (targets: CPU/op <= 0.5, throughput >= 1.0 at d1 and >= 1.5 at d16, p50 <= 1.0, p99 <= 1.5)"
python3 - "$RES" "$CONNS" <<'PY'
import sys, re
r = {}
for line in open(sys.argv[1]):
    f = line.split()
    if not f: continue
    r[f[0]] = {k: float(v) for k, v in (x.split("=") for x in f[1:] if "=" in x and x.split("=")[1].replace(".", "").isdigit())}
for d in (1, 16):
    m = r.get(f"memcached_get_d{d}")
    for who in ("inquire", "get"):
        i = r.get(f"icsd_{who}_d{d}")
        if not i or not m: continue
        def q(k): return i[k] / m[k] if m.get(k) else float("nan")
        print(f"d{d:<2} icsd {who:8s}: cpu/op {q('server_cpu_us_per_op'):.2f}x  ops/s {q('ops_per_s'):.2f}x  p50 {q('p50_us'):.2f}x  p99 {q('p99_us'):.2f}x")
nc = sys.argv[2]
for d in (1, 16):
    for sfx, what in (("", "closed loop"), ("_rate", "same offered load")):
        i, m = r.get(f"icsd_inquire_d{d}x{nc}{sfx}"), r.get(f"memcached_get_d{d}x{nc}{sfx}")
        if not i or not m: continue
        def q(k): return i[k] / m[k] if m.get(k) else float("nan")
        print(f"d{d:<2} x{nc} conns inquire, {what:17s}: cpu/op {q('server_cpu_us_per_op'):.2f}x  ops/s {q('ops_per_s'):.2f}x  p50 {q('p50_us'):.2f}x  p99 {q('p99_us'):.2f}x")
        if sfx and m.get("server_cpu_us_per_op"):
            # The kernel's part of icsd's time (receive, send, waking the
            # client) against memcached's whole: a floor under the ratio
            # that no user-space work of icsd's can lower.
            mc = m["server_cpu_us_per_op"]
            print(f"    us/op icsd user {i.get('server_user_us_per_op', 0):.2f} + sys {i.get('server_sys_us_per_op', 0):.2f}, "
                  f"memcached user {m.get('server_user_us_per_op', 0):.2f} + sys {m.get('server_sys_us_per_op', 0):.2f}; "
                  f"icsd's kernel time alone is {i.get('server_sys_us_per_op', 0) / mc:.2f}x memcached's total")
a, b = r.get("memcaslap_B_getonly_icsd"), r.get("memcaslap_B_getonly_memcached")
if a and b and b.get("tps"):
    print(f"memcaslap -B get-only: tps {a['tps'] / b['tps']:.2f}x")
PY

#!/usr/bin/env bash
# Client overhead: ops/s of ics-loadgen (raw, io_uring), the C client's
# pipelined batches (icsc-bench) and the Python client's pipeline() on the
# same icsd, same keys, one connection, the same requests in flight.
# The three run in turn for ROUNDS rounds of N seconds each and the median of
# each is compared, so that load from other processes hits all three alike.
#   bench/clients/run.sh [--smoke] [--seconds N] [--rounds R] [--depth D]
# Binaries from $ICS_BUILD_DIR (default build/release):
#   cmake --build build/release --target icsd ics-loadgen icsc-bench
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${ICS_BUILD_DIR:-$PWD/build/release}
SECS=2 ROUNDS=5 DEPTH=64 KEYS=10000
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SECS=1; ROUNDS=1; KEYS=2000 ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --depth) DEPTH=$2; shift ;;
    *) echo "usage: $0 [--smoke] [--seconds N] [--rounds R] [--depth D]" >&2; exit 2 ;;
  esac
  shift
done
for x in server/icsd bench/net/ics-loadgen bench/clients/icsc-bench; do
  [ -x "$B/$x" ] || { echo "clients bench: $B/$x not built; skipping"; exit 0; }
done
T=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"' EXIT
"$B/server/icsd" --data "$T/data" --port 0 --port-file "$T/port" >"$T/log" 2>&1 & PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && [ -s "$T/data/admin.cred" ] && break; sleep 0.1; done
PORT=$(cat "$T/port"); SECRET=$(sed -n 's/^secret=//p' "$T/data/admin.cred")
AUTH=(--port "$PORT" --user admin --secret "$SECRET")
"$B/bench/net/ics-loadgen" "${AUTH[@]}" --preload "$KEYS" --keys "$KEYS" --preload-only >/dev/null
echo "clients bench: icsd pid $PID port $PORT, $KEYS rows, 1 connection, depth $DEPTH, $ROUNDS rounds of ${SECS}s"
ops() { sed -E 's/.*ops_per_s=([0-9]+).*/\1/' <<<"$1"; }
LS=() CS=() PS=()
for r in $(seq "$ROUNDS"); do
  L=$("$B/bench/net/ics-loadgen" "${AUTH[@]}" --keys "$KEYS" --conns 1 --depth "$DEPTH" --duration "$SECS" --op inquire --label loadgen)
  C=$("$B/bench/clients/icsc-bench" "${AUTH[@]}" --keys "$KEYS" --depth "$DEPTH" --duration "$SECS")
  P=$(python3 bench/clients/bench_py.py "${AUTH[@]}" --keys "$KEYS" --depth "$DEPTH" --duration "$SECS")
  echo "round $r: loadgen $(ops "$L")  icsc $(ops "$C")  python $(ops "$P") ops/s"
  LS+=("$(ops "$L")"); CS+=("$(ops "$C")"); PS+=("$(ops "$P")")
done
python3 - "${LS[*]}" "${CS[*]}" "${PS[*]}" <<'PY'
import statistics, sys
l, c, p = (statistics.median(map(float, a.split())) for a in sys.argv[1:])
print(f"median ops/s: loadgen {l:.0f}, C client {c:.0f}, Python client {p:.0f}")
print(f"ratio C client / loadgen = {c / l:.2f}x, Python client / loadgen = {p / l:.2f}x")
PY

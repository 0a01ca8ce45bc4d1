#!/usr/bin/env bash
# bench/tls/run.sh — the TLS benchmark (bench/README.md, section TLS).
#
#   1. in process (tls_bench, on core 0): full and resumed mutual-TLS 1.3
#      handshakes per second of server time, record layer MB/s at 64 B,
#      1 KiB and 16 KiB writes;
#   2. over loopback: net/tls behind tls_bench_server vs `openssl s_server
#      -WWW`, each pinned to core 0, driven by the same CLIENTS parallel
#      `openssl s_time` processes pinned to core 1 (-new: full handshakes,
#      -reuse: resumed), with a client certificate (mutual TLS 1.3, ECDSA
#      P-256). Reports connections/s and connections per server CPU second
#      (the server's utime+stime from /proc), and the ratios.
#
# Usage: bench/tls/run.sh [--smoke] [--seconds N] [--clients N]
# Env: ICS_BUILD_DIR (default build/release) holds bench/tls/tls_bench*;
# exits 77 (skipped) when they or the openssl tool are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=5 CLIENTS=8 SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --smoke)   SMOKE=1 SECS=1 CLIENTS=4; shift ;;
    --seconds) SECS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    *) echo "usage: $0 [--smoke] [--seconds N] [--clients N]" >&2; exit 2 ;;
  esac
done
BUILD=${ICS_BUILD_DIR:-$ROOT/build/release}
BIN=$BUILD/bench/tls
if [ ! -x "$BIN/tls_bench" ] || [ ! -x "$BIN/tls_bench_server" ]; then
  echo "tls bench: $BIN/tls_bench* not built (cmake --build $BUILD --target tls_bench tls_bench_server): skipped"
  exit 77
fi
command -v openssl >/dev/null || { echo "tls bench: no openssl tool: skipped"; exit 77; }
NCPU=$(nproc)
SCORE=0 CCORE=$(( NCPU > 1 ? 1 : 0 ))
[ "$NCPU" -gt 1 ] || echo "tls bench: one core only: server and clients share it"

WORK=$(mktemp -d /tmp/ics_tls_bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
"$ROOT/scripts/mkcerts.sh" "$WORK" alice >/dev/null
printf 'ok\n' >"$WORK/page.txt"
TCK=$(getconf CLK_TCK)

echo "== tls bench: in process, core $SCORE ($( [ $SMOKE = 1 ] && echo smoke || echo "${SECS}s per figure"))"
taskset -c "$SCORE" "$BIN/tls_bench" "$WORK" "$( [ $SMOKE = 1 ] && echo 0.3 || echo 2)" | tee "$WORK/inproc"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Runs CLIENTS s_time processes against PORT; prints "conns reused wall_s".
drive() { # port mode(-new|-reuse)
  local port=$1 mode=$2 i t0 t1
  t0=$(date +%s.%N)
  for i in $(seq "$CLIENTS"); do
    taskset -c "$CCORE" openssl s_time -connect "127.0.0.1:$port" -tls1_3 \
      -cert "$WORK/alice.pem" -key "$WORK/alice.key" -CAfile "$WORK/ca.pem" \
      -www /page.txt "$mode" -time "$SECS" >"$WORK/st.$i" 2>&1 &
  done
  wait   # a $(...) subshell: its only children are these clients
  t1=$(date +%s.%N)
  local conns reused
  conns=$(cat "$WORK"/st.* | sed -nE 's/^([0-9]+) connections in [0-9.]+s;.*/\1/p' | awk '{s+=$1} END {print s+0}')
  # s_time prints one character per connection: 'r' when it was resumed.
  reused=$(cat "$WORK"/st.* | grep -E '^[r*0-9]+$' | tr -cd r | wc -c)
  rm -f "$WORK"/st.*
  echo "$conns $reused $(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
}

# measure NAME PID PORT MODE -> "conns/s conns/cpu_s" and a line of output
measure() {
  local name=$1 pid=$2 port=$3 mode=$4 c0 c1 out conns reused wall cpu
  c0=$(cpu_ticks "$pid")
  out=$(drive "$port" "$mode")
  c1=$(cpu_ticks "$pid")
  read -r conns reused wall <<<"$out"
  cpu=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" 'BEGIN{printf "%.3f", (b-a)/t}')
  local rate percpu
  rate=$(awk -v n="$conns" -v w="$wall" 'BEGIN{printf "%.0f", n/w}')
  percpu=$(awk -v n="$conns" -v c="$cpu" 'BEGIN{ if (c > 0) printf "%.0f", n/c; else print "nan"}')
  printf '%-26s %-7s %7s conns in %5.2fs = %6s/s; server cpu %6.2fs = %6s conns per cpu-s (reused %s)\n' \
    "$name" "$mode" "$conns" "$wall" "$rate" "$cpu" "$percpu" "$reused" >&2
  echo "$rate $percpu"
}

start_ours() {
  rm -f "$WORK/port"
  taskset -c "$SCORE" "$BIN/tls_bench_server" "$WORK" "$WORK/port" "$WORK/page.txt" >"$WORK/ours.log" 2>&1 &
  OURS=$!; PIDS+=("$OURS")
  for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
  OURS_PORT=$(cat "$WORK/port")
}

start_sserver() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(( 20000 + RANDOM % 40000 ))
    (cd "$WORK" && exec taskset -c "$SCORE" openssl s_server -accept "127.0.0.1:$port" -tls1_3 \
       -cert server.pem -key server.key -CAfile ca.pem -Verify 1 -WWW) \
       >"$WORK/sserver.log" 2>&1 </dev/null &
    SSRV=$!
    for _ in $(seq 50); do
      if grep -q ACCEPT "$WORK/sserver.log" 2>/dev/null; then PIDS+=("$SSRV"); SSRV_PORT=$port; return 0; fi
      kill -0 "$SSRV" 2>/dev/null || break
      sleep 0.05
    done
    kill "$SSRV" 2>/dev/null || true; wait "$SSRV" 2>/dev/null || true
  done
  echo "tls bench: s_server did not start: $(cat "$WORK/sserver.log")" >&2
  return 1
}

echo "== tls bench: loopback, server on core $SCORE, $CLIENTS s_time clients on core $CCORE, ${SECS}s each"
start_ours
start_sserver
read -r ours_full ours_full_cpu < <(measure "net/tls (tls_bench_server)" "$OURS" "$OURS_PORT" -new)
read -r ssl_full ssl_full_cpu < <(measure "openssl s_server" "$SSRV" "$SSRV_PORT" -new)
read -r ours_res ours_res_cpu < <(measure "net/tls (tls_bench_server)" "$OURS" "$OURS_PORT" -reuse)
read -r ssl_res ssl_res_cpu < <(measure "openssl s_server" "$SSRV" "$SSRV_PORT" -reuse)
kill "$OURS" "$SSRV" 2>/dev/null || true
wait "$OURS" 2>/dev/null || true
echo "tls_bench_server: $(cat "$WORK/ours.log")"
# Where a loopback connection's server CPU goes: the TLS work (the in-process
# figures above: thread CPU time inside tls_conn_* per handshake, less the
# thread-CPU clock reads that time it) vs the rest
# (kernel TCP setup and teardown, accept, epoll, send/recv, close, this
# loop), by difference with the loopback CPU per connection. Both are CPU
# time, so other processes on core 0 do not inflate either.
inproc() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/inproc"; }
split() { # conns per cpu-s over loopback, in-process handshakes per s -> "tls_us other_us"
  awk -v pc="$1" -v hs="$2" 'BEGIN{ if (pc > 0 && hs > 0) { t = 1e6 / hs; printf "%.0f %.0f\n", t, 1e6 / pc - t } else print "nan nan"}'
}
read -r tls_full_us other_full_us < <(split "$ours_full_cpu" "$(inproc tls.full_handshakes_per_s_server_core_less_clock)")
read -r tls_res_us other_res_us < <(split "$ours_res_cpu" "$(inproc tls.resumed_handshakes_per_s_server_core_less_clock)")
echo "tls.loopback_server_us_per_conn full: ${tls_full_us} TLS work + ${other_full_us} the rest; resumed: ${tls_res_us} TLS work + ${other_res_us} the rest"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "nan"}'; }
echo "tls.full_hs_ratio_vs_s_server_throughput $(ratio "$ours_full" "$ssl_full") x"
echo "tls.full_hs_ratio_vs_s_server_per_cpu $(ratio "$ours_full_cpu" "$ssl_full_cpu") x   (target >= 1.0)"
# Issue 5: ">= 1.0x s_server's full handshakes/s, >= 3x with resumption",
# against s_server: read as our resumed against s_server's resumed (the
# stricter) and against its full; our own resumed/full is printed too.
echo "tls.resumed_vs_full_ours_per_cpu $(ratio "$ours_res_cpu" "$ours_full_cpu") x   (our own resumed/full; the kernel's per-connection work is in both)"
echo "tls.resumed_vs_full_ours_if_the_rest_were_free $(ratio "$tls_full_us" "$tls_res_us") x   (in-process TLS work only, without the per-connection rest)"
echo "tls.resumed_vs_full_s_server_per_cpu $(ratio "$ssl_res_cpu" "$ssl_full_cpu") x"
echo "tls.resumed_hs_ratio_vs_s_server_throughput $(ratio "$ours_res" "$ssl_res") x"
echo "tls.resumed_hs_ratio_vs_s_server_per_cpu $(ratio "$ours_res_cpu" "$ssl_res_cpu") x   (target >= 3)"
echo "tls.resumed_hs_vs_s_server_full_per_cpu $(ratio "$ours_res_cpu" "$ssl_full_cpu") x"

#!/usr/bin/env bash
# bench/tls/vs_plain.sh — inquiries over TLS vs plaintext, side by side in one
# run (bench/README.md, section TLS; issue 5's targets: TLS throughput >= 0.8x
# plaintext at pipeline depth 1 and >= 0.9x at depth 16).
#
# ONE icsd (--threads 1, core 0) with both a plaintext and a TLS listener;
# rows preloaded over the plaintext port; then ics-loadgen (core 1) sends
# INQUIRE_DEVICE on uniform keys, one connection, at depth 1 and 16, as
# principal admin: SASL PLAIN on the plaintext port, a client certificate
# naming admin (mutual TLS 1.3, ECDSA P-256) on the TLS port. Each round
# runs every (depth, transport) pair once, the order of plain and TLS
# flipping from round to round; the best of each pair over the rounds is
# compared (ops/s and the server's CPU time per inquiry, utime + stime from
# /proc/PID/stat, as bench/net/run.sh measures it), and the medians too.
#
# Usage: bench/tls/vs_plain.sh [--smoke] [--rounds N] [--seconds N] [--keys N]
#        [--conns N]
#   --smoke: 1 round of 1 s per pair, 10,000 rows (a few seconds, for CI)
# Env: ICS_BUILD_DIR (default build/release) holds server/icsd and
# bench/net/ics-loadgen; ICSD overrides the server binary (to compare two
# builds). Exits 77 (skipped) when they or the openssl tool are missing,
# non-zero when a run fails or answers with an error status.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ROUNDS=5 SECS=3 KEYS=100000 CONNS=1 SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --smoke)   SMOKE=1 ROUNDS=1 SECS=1 KEYS=10000; shift ;;
    --rounds)  ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --keys)    KEYS=$2; shift 2 ;;
    --conns)   CONNS=$2; shift 2 ;;
    *) echo "usage: $0 [--smoke] [--rounds N] [--seconds N] [--keys N] [--conns N]" >&2; exit 2 ;;
  esac
done
BUILD=${ICS_BUILD_DIR:-$ROOT/build/release}
ICSD=${ICSD:-$BUILD/server/icsd}
LG=$BUILD/bench/net/ics-loadgen
if [ ! -x "$ICSD" ] || [ ! -x "$LG" ]; then
  echo "tls vs plain: $ICSD or $LG not built (cmake --build $BUILD --target icsd ics-loadgen): skipped"
  exit 77
fi
command -v openssl >/dev/null || { echo "tls vs plain: no openssl tool (scripts/mkcerts.sh needs it): skipped"; exit 77; }
NCPU=$(nproc)
SCORE=0 CCORE=$(( NCPU > 1 ? 1 : 0 ))
[ "$NCPU" -gt 1 ] || echo "tls vs plain: one core only: server and client share it"

WORK=$(mktemp -d /tmp/ics_tls_vs_plain.XXXXXX)
ICSD_PID=
cleanup() {
  if [ -n "$ICSD_PID" ]; then kill "$ICSD_PID" 2>/dev/null || true; wait "$ICSD_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
"$ROOT/scripts/mkcerts.sh" "$WORK/certs" admin >/dev/null

taskset -c "$SCORE" "$ICSD" --data "$WORK/data" --port 0 --port-file "$WORK/port" --threads 1 \
  --log-level warn --tls-port 0 --tls-cert "$WORK/certs/server.pem" \
  --tls-key "$WORK/certs/server.key" --tls-ca "$WORK/certs/ca.pem" 2>>"$WORK/icsd.log" &
ICSD_PID=$!
for _ in $(seq 200); do grep -q '^tls=' "$WORK/port" 2>/dev/null && break; sleep 0.05; done
if ! grep -q '^tls=' "$WORK/port" 2>/dev/null; then
  echo "tls vs plain: icsd did not start: $(cat "$WORK/icsd.log")" >&2
  exit 1
fi
PORT=$(head -1 "$WORK/port")
TLS_PORT=$(sed -n 's/^tls=//p' "$WORK/port")
SECRET=$(sed -n 's/^secret=//p' "$WORK/data/admin.cred")
PLAIN=(--port "$PORT" --user admin --secret "$SECRET")
TLS=(--port "$TLS_PORT" --tls --cert "$WORK/certs/admin.pem" --key "$WORK/certs/admin.key"
     --ca "$WORK/certs/ca.pem")
lg() { taskset -c "$CCORE" "$LG" --keys "$KEYS" "$@"; }

echo "== tls vs plain: one icsd (core $SCORE, pid $ICSD_PID), ics-loadgen on core $CCORE," \
     "$ROUNDS round(s) of ${SECS}s per pair, $KEYS rows, $CONNS connection(s)"
echo "load average before: $(cat /proc/loadavg)"
lg "${PLAIN[@]}" --preload "$KEYS" --preload-only
# The durable preload leaves the server busy for a moment (group commit,
# snapshot): a discarded warm-up run keeps that out of round 1.
[ $SMOKE = 1 ] || lg "${PLAIN[@]}" --depth 16 --duration 1 --label warmup >/dev/null

RES=$WORK/results
for r in $(seq "$ROUNDS"); do
  order="plain tls"; [ $((r % 2)) = 0 ] && order="tls plain"
  for d in 1 16; do
    for t in $order; do
      if [ "$t" = plain ]; then args=("${PLAIN[@]}"); else args=("${TLS[@]}"); fi
      lg "${args[@]}" --conns "$CONNS" --depth "$d" --duration "$SECS" \
        --server-pid "$ICSD_PID" --label "${t}_d$d" | tee -a "$RES"
    done
  done
done
echo "load average after: $(cat /proc/loadavg)"
kill -TERM "$ICSD_PID"; wait "$ICSD_PID" || true; ICSD_PID=

echo
echo "# best of $ROUNDS per pair; TLS / plaintext (targets: ops/s >= 0.8x at d1, >= 0.9x at d16)"
python3 - "$RES" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    if not f:
        continue
    kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
    if int(kv["ops"]) == 0:
        sys.exit(f"{f[0]}: no operation answered")
    runs.setdefault(f[0], []).append(
        (float(kv["ops_per_s"]), float(kv["server_cpu_us_per_op"]), float(kv["p50_us"])))
# Round r's plain and TLS runs of one depth ran back to back, so what other
# processes did to the machine hit both alike: the median of these per-round
# ratios is steadier on a shared machine than the ratio of bests or medians.
def paired(d):
    p, t = runs.get(f"plain_d{d}", []), runs.get(f"tls_d{d}", [])
    ops = [b[0] / a[0] for a, b in zip(p, t)]
    cpu = [b[1] / a[1] for a, b in zip(p, t) if a[1] > 0 and b[1] > 0]
    return ops, cpu
def summary(name):
    r = runs[name]
    cpu = [x[1] for x in r if x[1] > 0] or [float("nan")]
    return {"ops": max(x[0] for x in r), "cpu": min(cpu), "p50": min(x[2] for x in r),
            "mops": statistics.median(x[0] for x in r), "mcpu": statistics.median(cpu)}
for d, target in ((1, 0.8), (16, 0.9)):
    if f"plain_d{d}" not in runs or f"tls_d{d}" not in runs:
        continue
    p, t = summary(f"plain_d{d}"), summary(f"tls_d{d}")
    ratio = t["ops"] / p["ops"]
    print(f"d{d:<2} plain {p['ops']:9.0f} ops/s {p['cpu']:6.2f} us cpu/op p50 {p['p50']:6.1f} us | "
          f"tls {t['ops']:9.0f} ops/s {t['cpu']:6.2f} us cpu/op p50 {t['p50']:6.1f} us")
    print(f"ratio tls/plain d{d}: ops/s {ratio:.2f}x (target >= {target}: "
          f"{'met' if ratio >= target else 'missed'}), server cpu/inquiry {t['cpu'] / p['cpu']:.2f}x, "
          f"p50 {t['p50'] / p['p50']:.2f}x; medians: ops/s {t['mops'] / p['mops']:.2f}x, "
          f"cpu/inquiry {t['mcpu'] / p['mcpu']:.2f}x")
    ops, cpu = paired(d)
    if ops:
        print(f"paired tls/plain d{d} (median of {len(ops)} back-to-back pairs): ops/s "
              f"{statistics.median(ops):.2f}x (range {min(ops):.2f}-{max(ops):.2f}), cpu/inquiry "
              f"{statistics.median(cpu) if cpu else float('nan'):.2f}x")
PY

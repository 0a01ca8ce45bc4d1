#!/usr/bin/env bash
# bench/engine/hist.sh — history ring memory and recording cost (issues 2
# and 7), this tree's engine against another build's, alternated in one run.
#   BASE_BUILD=build/<dir> bench/engine/hist.sh [--smoke]
# BASE_BUILD: a build (any type; its engine/libics_engine.a is linked into
# the same bench_hist.c, compiled here with -O2 and jemalloc, as the
# Release build compiles it). Without it only this tree's engine runs.
# Env: ICS_BUILD (default build/release; built with -DICS_BENCH=ON), DEVICES,
# OPS, ROUNDS, AB_ROUNDS. Each round runs every binary once in a fresh
# process (history_len 16 with 1-2 entries per device, and history_len 0),
# then prints the medians and the ratios new/base. With BASE_BUILD it then
# runs both in one window pass by pass (bench_hist --serve, both pinned to
# one core, the order reversed every round): AB_ROUNDS passes of recording
# and of bare inquiries on young rings (each pass records DEVICES/8
# inquiries, so the rings go from 1-2 entries to about 2-3 and many grow),
# then as many on full rings; medians of the per-round ratios new/base,
# which a drifting load on a shared machine hits alike.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ICS_BUILD:-build/release}
BASE_BUILD=${BASE_BUILD:-}
DEVICES=${DEVICES:-500000}; OPS=${OPS:-1000000}; ROUNDS=${ROUNDS:-3}; AB_ROUNDS=${AB_ROUNDS:-8}
if [ "${1:-}" = "--smoke" ]; then DEVICES=20000; OPS=50000; ROUNDS=1; AB_ROUNDS=2; fi
cmake --build "$BUILD" -j2 --target bench_hist >/dev/null
TMP=$(mktemp -d /tmp/ics-benchhist-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
declare -A BIN
BIN[new]=$BUILD/bench/engine/bench_hist
NAMES="new"
if [ -n "$BASE_BUILD" ]; then
  cc -O2 -std=gnu11 -o "$TMP/bench_hist_base" bench/engine/bench_hist.c -Iengine \
     "$BASE_BUILD/engine/libics_engine.a" -lurcu-memb -lurcu-common -lxxhash \
     -ljemalloc -lpthread
  BIN[base]=$TMP/bench_hist_base
  NAMES="base new"
fi
for r in $(seq "$ROUNDS"); do
  for n in $NAMES; do
    for h in 16 0; do
      taskset -c 0 "${BIN[$n]}" --devices "$DEVICES" --ops "$OPS" --history-len $h \
        > "$TMP/$n-$h-$r.txt"
    done
  done
done
python3 - "$TMP" "$ROUNDS" $NAMES <<'PY'
import sys, statistics, glob
tmp, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(n, h):
    runs = []
    for r in range(1, rounds + 1):
        d = {}
        for line in open(f"{tmp}/{n}-{h}-{r}.txt"):
            k, _, v = line.strip().partition(" ")
            try: d[k] = float(v)
            except ValueError: pass
        runs.append(d)
    return {k: statistics.median(x[k] for x in runs) for k in runs[0]}
res = {(n, h): load(n, h) for n in names for h in (16, 0)}
keys = ["rss_B_per_dev", "eng_B_per_dev", "fill_ns_per_dev", "inquire_ns", "record_young_ns",
        "record_full_ns", "rss_full_B_per_dev"]
print(f"# medians of {rounds} rounds; history_len 16 with 1-2 entries per device unless noted")
print("%-22s" % "metric" + "".join("%14s" % n for n in names) +
      ("%14s" % "new/base" if len(names) == 2 else ""))
for k in keys:
    v = [res[(n, 16)].get(k) for n in names]
    line = "%-22s" % k + "".join("%14.1f" % x for x in v)
    if len(names) == 2 and v[0]: line += "%14.3f" % (v[1] / v[0])
    print(line)
for n in names:
    h = res[(n, 16)]["rss_B_per_dev"] - res[(n, 0)]["rss_B_per_dev"]
    print(f"{n}: history ring resident bytes per device (16 minus 0): {h:.0f}; "
          f"recording cost over a bare inquiry: young {res[(n,16)]['record_young_ns'] - res[(n,16)]['inquire_ns']:.1f} ns, "
          f"full {res[(n,16)]['record_full_ns'] - res[(n,16)]['inquire_ns']:.1f} ns; "
          f"inquire_ns with history_len 0: {res[(n,0)]['inquire_ns']:.1f}")
PY

[ -n "$BASE_BUILD" ] || exit 0
echo
python3 - "${BIN[base]}" "${BIN[new]}" "$DEVICES" "$OPS" "$AB_ROUNDS" <<'PY'
import subprocess, sys, statistics
base, new, dev, ops, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
P = {}
for n, b in (("base", base), ("new", new)):
    p = subprocess.Popen(["taskset", "-c", "0", b, "--devices", str(dev), "--serve"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    while p.stdout.readline().strip() != "ready":
        pass
    P[n] = p
def cmd(n, c):
    P[n].stdin.write(c + "\n"); P[n].stdin.flush()
    return P[n].stdout.readline().strip()
def phase(label, per):
    res = {(n, k): [] for n in P for k in ("record", "inquire")}
    for r in range(rounds):
        order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
        for k in ("record", "inquire"):
            for n in order:
                res[(n, k)].append(float(cmd(n, f"{k} {per}")))
    print(f"# {label}: {rounds} alternated passes of {per} inquiries each (ns per inquiry, medians)")
    for k in ("record", "inquire"):
        ratios = [a / b for a, b in zip(res[("new", k)], res[("base", k)])]
        print(f"{label:6s} {k:8s} base {statistics.median(res[('base', k)]):8.1f}  "
              f"new {statistics.median(res[('new', k)]):8.1f}  new/base (median of per-pass ratios) "
              f"{statistics.median(ratios):.3f}")
    cost = {n: [a - b for a, b in zip(res[(n, "record")], res[(n, "inquire")])] for n in P}
    print(f"{label:6s} recording cost (record minus inquire): base {statistics.median(cost['base']):.1f} ns, "
          f"new {statistics.median(cost['new']):.1f} ns")
phase("young", max(dev // 8, 1))
for n in P:
    assert cmd(n, "full") == "ok"
phase("full", ops)
for n in P:
    P[n].stdin.write("quit\n"); P[n].stdin.close(); P[n].wait()
PY

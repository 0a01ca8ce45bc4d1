#!/usr/bin/env bash
# bench/engine/hist.sh — history ring memory and recording cost (issues 2
# and 7), this tree's engine against another build's, alternated in one run.
#   BASE_BUILD=build/<dir> bench/engine/hist.sh [--smoke]
# BASE_BUILD: a build (any type; its engine/libics_engine.a is linked into
# the same bench_hist.c, compiled here with -O2 and jemalloc, as the
# Release build compiles it). Without it only this tree's engine runs.
# Env: ICS_BUILD (default build/release; built with -DICS_BENCH=ON), DEVICES,
# OPS, ROUNDS. Each round runs every binary once in a fresh process
# (history_len 16 with 1-2 entries per device, and history_len 0), then
# prints the medians and the ratios new/base.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ICS_BUILD:-build/release}
BASE_BUILD=${BASE_BUILD:-}
DEVICES=${DEVICES:-500000}; OPS=${OPS:-1000000}; ROUNDS=${ROUNDS:-3}
if [ "${1:-}" = "--smoke" ]; then DEVICES=20000; OPS=50000; ROUNDS=1; fi
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

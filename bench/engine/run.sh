#!/usr/bin/env bash
# bench/engine/run.sh — the engine against absl, TBB and ck_ht, side by side
# in one process, and its targets as ratios (bench/README.md "## Engine").
#   bench/engine/run.sh [--smoke]      --smoke: a seconds-long run (CI)
# Env: ICS_BUILD or ICS_BUILD_DIR (default build/release), ICS_BENCH_ROWS
# (default 1000000; CI 100000), REPS (rounds, default 5), MIN_TIME (seconds
# per benchmark and round, default 0.3), FILTER (a --benchmark_filter), OUT
# (where the JSON goes; default a temporary file, removed).
# Every repetition of every benchmark runs in rounds, in random order
# (--benchmark_enable_random_interleaving), and targets.py takes each ratio
# within a round. Huge pages on (jemalloc's thp): without them every
# structure pays a nested page walk per random access on this VM.
set -euo pipefail
cd "$(dirname "$0")/../.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
BUILD=${ICS_BUILD:-${ICS_BUILD_DIR:-build/release}}
if [ ! -x "$BUILD/bench/engine/bench_engine" ]; then
  echo "run.sh: building bench_engine in $BUILD"
  [ -f "$BUILD/build.ninja" ] || scripts/build.sh "$(basename "$BUILD")" >/dev/null
  cmake --build "$BUILD" -j2 --target bench_engine >/dev/null
fi
if [ $SMOKE = 1 ]; then
  ROWS=${ICS_BENCH_ROWS:-100000}; REPS=${REPS:-2}; MT=${MIN_TIME:-0.01}
else
  ROWS=${ICS_BENCH_ROWS:-1000000}; REPS=${REPS:-5}; MT=${MIN_TIME:-0.3}
fi
JSON=${OUT:-$(mktemp /tmp/ics-enginebench-XXXXXX.json)}
[ -n "${OUT:-}" ] || trap 'rm -f "$JSON"' EXIT
echo "run.sh: $ROWS rows, $REPS rounds of ${MT}s per benchmark, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
MALLOC_CONF=${MALLOC_CONF:-thp:always,metadata_thp:always} ICS_BENCH_ROWS=$ROWS \
  "$BUILD/bench/engine/bench_engine" --benchmark_min_time="$MT" \
  --benchmark_repetitions="$REPS" --benchmark_enable_random_interleaving=true \
  --benchmark_display_aggregates_only=true ${FILTER:+--benchmark_filter="$FILTER"} \
  --benchmark_out="$JSON" --benchmark_out_format=json 2>&1 |
  grep -v -E '_(mean|stddev|cv) ' # the JSON has every round; show medians
echo
python3 bench/engine/targets.py "$JSON"

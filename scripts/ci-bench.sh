#!/usr/bin/env bash
# CI stage "bench": a benchmark SMOKE run (seconds, not minutes). Builds
# flavour `release` (scripts/build.sh release) and runs every benchmark that
# exists, discovered, never listed by hand:
#   bench/<layer>/run.sh      run as `run.sh --smoke` (env ICS_BUILD_DIR points
#                             at build/release, ICS_BENCH_ROWS=100000)
#   otherwise, each Google Benchmark binary in build/release/bench/<layer>/
#                             with ICS_BENCH_ROWS=100000 --benchmark_min_time=0.01
#   plus the extra smoke scripts listed in EXTRA below (a layer's second
#   benchmark, e.g. bench/tls/vs_plain.sh: TLS vs plaintext inquiries)
# and prints their figures. Speed never fails the stage: a benchmark that
# crashes (non-zero exit other than 77 = skipped) does. One that overruns its
# share of the time budget (ICS_BENCH_BUDGET, default 170 s for all runs, at
# most 90 s each) is stopped and reported as a TIMEOUT warning.
# ICS_BENCH_ONLY="engine net" runs only those layers (by hand).
# Last line: SUMMARY: N benchmarks run, N ok, N skipped, N failed, N timeouts
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build/release
BUDGET=${ICS_BENCH_BUDGET:-170}
PER_MAX=${ICS_BENCH_PER_MAX:-90}
OUT=build/bench-smoke; mkdir -p "$OUT"
export ICS_BENCH_ROWS=${ICS_BENCH_ROWS:-100000}
export ICS_BUILD_DIR=$ROOT/$BUILD

echo "ci-bench: building flavour release into $BUILD"
if ! scripts/build.sh release >build/release.build.log 2>&1; then
  tail -40 build/release.build.log
  echo "SUMMARY: release build FAILED"
  exit 1
fi

# What to run: "name|kind|path" lines.
RUNS=()
shopt -s nullglob
for dir in bench/*/; do
  layer=$(basename "$dir")
  if [ -n "${ICS_BENCH_ONLY:-}" ] && [[ " $ICS_BENCH_ONLY " != *" $layer "* ]]; then continue; fi
  if [ -f "$dir/run.sh" ]; then
    RUNS+=("$layer/run.sh|script|$dir/run.sh")
    continue
  fi
  found=0
  if [ -d "$BUILD/bench/$layer" ]; then
    while IFS= read -r bin; do
      if grep -q -a -e 'benchmark_min_time' -e '_ZN9benchmark' "$bin" 2>/dev/null; then
        RUNS+=("$layer/$(basename "$bin")|gbench|$bin"); found=1
      else
        echo "ci-bench: $bin: not a Google Benchmark binary and no bench/$layer/run.sh: skipped"
      fi
    done < <(find "$BUILD/bench/$layer" -maxdepth 2 -type f -perm -u+x ! -name '*.so' ! -path '*CMakeFiles*' | sort)
  fi
  [ $found = 1 ] || echo "ci-bench: bench/$layer: nothing runnable built (no run.sh, no benchmark binary): skipped"
done
# Second scripts of a layer, run with --smoke like run.sh: "layer/script".
EXTRA=(tls/vs_plain.sh)
for e in "${EXTRA[@]}"; do
  layer=${e%%/*}
  if [ -n "${ICS_BENCH_ONLY:-}" ] && [[ " $ICS_BENCH_ONLY " != *" $layer "* ]]; then continue; fi
  [ -f "bench/$e" ] && RUNS+=("$e|script|bench/$e")
done
if [ ${#RUNS[@]} -eq 0 ]; then
  echo "ci-bench: no benchmarks exist yet"
  echo "SUMMARY: 0 benchmarks (none exist yet)"
  exit 0
fi

START=$(date +%s)
NOK=0 NSKIP=0 NFAIL=0 NTO=0 LINES=()
for r in "${RUNS[@]}"; do
  IFS='|' read -r name kind path <<<"$r"
  left=$(( BUDGET - ($(date +%s) - START) ))
  lim=$PER_MAX; [ $left -lt $lim ] && lim=$left
  if [ $lim -lt 5 ]; then
    echo "ci-bench: $name: no time left in the ${BUDGET}s budget: not run"
    LINES+=("$(printf '%-34s not run (budget)' "$name")"); NSKIP=$((NSKIP+1)); continue
  fi
  log=$OUT/$(echo "$name" | tr '/' '_').log
  echo
  echo "---- ci-bench: $name (limit ${lim}s) ----"
  t0=$(date +%s.%N)
  case $kind in
    script) timeout -k 5 "$lim" bash "$path" --smoke >"$log" 2>&1 ;;
    gbench) timeout -k 5 "$lim" "$path" --benchmark_min_time=0.01 >"$log" 2>&1 ;;
  esac
  rc=$?
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  # The figures: the whole output when short, else its head and tail.
  # (A line of theirs starting "SUMMARY: " would be taken for this stage's.)
  { if [ "$(wc -l <"$log")" -le 80 ]; then cat "$log"; else head -30 "$log"; echo "[...]"; tail -40 "$log"; fi; } |
    sed 's/^SUMMARY:/ SUMMARY:/'
  case $rc in
    0)   st="ok";                    NOK=$((NOK+1)) ;;
    77)  st="skipped (exit 77)";     NSKIP=$((NSKIP+1)) ;;
    124|137) st="TIMEOUT after ${lim}s (warning: smoke runs should take seconds)"; NTO=$((NTO+1)) ;;
    *)   st="FAILED (exit $rc)";     NFAIL=$((NFAIL+1)) ;;
  esac
  echo "---- ci-bench: $name: $st, ${dt}s (log $log)"
  LINES+=("$(printf '%-34s %-10s %6ss' "$name" "${st%% *}" "$dt")")
done

echo
echo "ci-bench: results ($(( $(date +%s) - START ))s of runs)"
for l in "${LINES[@]}"; do echo "  $l"; done
echo "SUMMARY: ${#RUNS[@]} benchmarks run, $NOK ok, $NSKIP skipped, $NFAIL failed, $NTO timeouts"
[ $NFAIL -eq 0 ]

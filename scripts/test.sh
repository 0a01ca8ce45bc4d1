#!/usr/bin/env bash
# The test command: installs what is missing, builds every flavour and runs
# every test stage. Idempotent; prints what it does and a summary at the end.
#   ICS_LONG=1   nightly mode: fuzzers and crash tests run for an hour
#   ICS_STAGES   space-separated subset, e.g. "gcc asan" (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
STAGES=${ICS_STAGES:-"deps gcc clang asan tsan fuzz coverage lint bench"}
SUMMARY=()
TOTAL_PASS=0 TOTAL_FAIL=0
FAILED=0

stage() { echo; echo "=== stage: $* ($(( $(date +%s) - START ))s) ==="; }
want() { [[ " $STAGES " == *" $1 "* ]]; }
note() { SUMMARY+=("$*"); }

# Runs ctest in a build dir and folds its counts into the totals.
run_ctest() { # name dir [ctest args...]
  local name=$1 dir=$2; shift 2
  local log=build/$name.ctest.log
  ( cd "$dir" && ctest --output-on-failure --timeout 600 "$@" ) >"$log" 2>&1
  local rc=$?
  grep -E '^(The following tests|[0-9]+% tests passed|Total Test time)' -A 50 "$log" | grep -vE '^\s*$' | tail -n 30
  local line; line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    if grep -q 'No tests were found' "$log"; then line="no tests"; else
      line="ctest did not finish (rc=$rc)"; cat "$log" | tail -40; FAILED=1; fi
  else
    local failed total
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    TOTAL_PASS=$((TOTAL_PASS + total - failed)); TOTAL_FAIL=$((TOTAL_FAIL + failed))
    [ "$failed" -eq 0 ] || { FAILED=1; grep -B2 -A40 -E '\*\*\*Failed|\(Failed\)|Exception' "$log" | head -200; }
  fi
  [ $rc -eq 0 ] || FAILED=1
  note "$(printf '%-10s %s' "$name" "$line")"
}

build_or_fail() { # name
  if scripts/build.sh "$@" >build/"$1".build.log 2>&1; then
    echo "built $1 ($(grep -c '\] ' build/"$1".build.log) steps)"
    return 0
  fi
  tail -60 build/"$1".build.log; FAILED=1; note "$(printf '%-10s BUILD FAILED' "$1")"; return 1
}

mkdir -p build
if want deps; then stage deps; scripts/deps.sh || exit 1; fi

if want gcc; then
  stage "gcc -Werror: build, unit + integration tests"
  build_or_fail gcc && run_ctest gcc build/gcc -LE 'bench'
  if [ "${ICS_LONG:-0}" = 1 ] && [ -x build/gcc/tests/crash/crash_persist_kill ]; then
    # The long crash run (300 kills, up to an hour) outside ctest, whose
    # timeout is sized for the short one it ran above.
    stage "crash, long: 300 kills"
    if ICS_CRASH_LONG=1 build/gcc/tests/crash/crash_persist_kill build/gcc/tests/crash/crash_writer \
         >build/crash-long.log 2>&1; then r=passed; else r=FAILED; FAILED=1; fi
    tail -5 build/crash-long.log
    note "$(printf '%-10s %s: %s' crash-long "$r" "$(sed -nE 's/^crash report: ([0-9]+ rounds).*(lost [0-9]+, half-applied [0-9]+).*/\1, \2/p' build/crash-long.log)")"
  fi
fi
if want clang; then
  stage "clang -Werror: build"
  build_or_fail clang && note "$(printf '%-10s %s' clang 'built with -Werror')"
fi
if want asan; then
  stage "ASan+UBSan: unit + integration tests"
  build_or_fail asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest asan build/asan -LE 'bench|nosan'
fi
if want tsan; then
  stage "TSan: concurrency tests"
  build_or_fail tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run_ctest tsan build/tsan -L concurrency
fi
for s in fuzz coverage lint bench; do
  if want $s && [ -x scripts/ci-$s.sh ]; then
    stage "$s"
    # tee to a file, not /dev/stderr: reopening stderr would truncate a log
    # file CI redirects us into.
    scripts/ci-$s.sh 2>&1 | tee build/ci-$s.log
    rc=${PIPESTATUS[0]}
    out=$(grep '^SUMMARY:' build/ci-$s.log | tail -1 | sed 's/^SUMMARY: //')
    [ "$rc" -eq 0 ] || FAILED=1
    note "$(printf '%-10s %s' $s "${out:-rc=$rc}")"
  fi
done

echo
echo "=== summary ($(( $(date +%s) - START ))s) ==="
for l in "${SUMMARY[@]}"; do echo "  $l"; done
# The per-target and per-benchmark figures, here in one place as well.
if want fuzz && [ -f build/ci-fuzz.log ]; then
  echo "  fuzz, per target:"
  sed -n '/^ci-fuzz: per target/,/^$/p' build/ci-fuzz.log | grep '^  ' | sed 's/^/  /'
fi
if want bench && [ -f build/ci-bench.log ]; then
  echo "  benchmark smoke figures (ratios vs the references; noisy, no pass/fail):"
  grep -E '^(d1 |d16 |memcaslap -B|ratio |engine targets|\| [a-z0-9]|history |prefs |keys |tls\.(full|resumed)_[a-z_]*(ratio|vs)|BM_(engine|absl)_(device|binding)/hit:1/real_time/threads:1|BM_engine_device_batch16/real_time/threads:1)' \
    build/ci-bench.log | cut -c1-120 | sed 's/^/    /'
fi
echo "tests: $TOTAL_PASS passed, $TOTAL_FAIL failed"
exit $FAILED

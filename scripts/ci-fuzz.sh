#!/usr/bin/env bash
# CI stage "fuzz": builds flavour `fuzz` (clang, libFuzzer + ASan + UBSan) and
# runs every target listed in build/fuzz/fuzz/fuzzers.txt for a bounded time,
# each from a COPY of its committed corpus (fuzz/corpus/NAME) with its
# dictionary (fuzz/NAME.dict, plus fuzz/common.dict). New corpus entries stay
# in the copy: nothing is committed automatically.
#
# Budget: ICS_FUZZ_TOTAL seconds in all (default 360 in CI, 3600 with
# ICS_LONG=1), per target min(ICS_FUZZ_MAX_PER_TARGET=60 (CI) | 3600 (long),
# total / count), at least 5 s. Extra libFuzzer flags: ICS_FUZZ_ARGS.
# ICS_FUZZ_ONLY="a b" runs only those targets (by hand).
#
# Fails when a target crashes, leaks, times out (-timeout=10), runs out of
# memory (-rss_limit_mb=2048) or does not build; each failing input is printed
# as a reproducer (hexdump -C and the exact replay command) and kept in
# build/fuzz-artifacts/. Last line: SUMMARY: N targets, E execs, C crashes, ...
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build/fuzz
ART=$ROOT/build/fuzz-artifacts
WORK=$ROOT/build/fuzz-work

if [ "${ICS_LONG:-0}" = 1 ]; then
  TOTAL=${ICS_FUZZ_TOTAL:-3600}; MAXPER=${ICS_FUZZ_MAX_PER_TARGET:-3600}
else
  TOTAL=${ICS_FUZZ_TOTAL:-360};  MAXPER=${ICS_FUZZ_MAX_PER_TARGET:-60}
fi

human() { # 2100000 -> 2.1M
  awk -v n="$1" 'BEGIN { if (n >= 1e9) printf "%.1fG", n/1e9; else if (n >= 1e6) printf "%.1fM", n/1e6;
                         else if (n >= 1e3) printf "%.1fk", n/1e3; else printf "%d", n }'
}

# 1. Build. The libraries live outside fuzz/, where fuzz/CMakeLists.txt's
# -fsanitize=fuzzer-no-link does not reach: pass it for the whole tree so
# libFuzzer sees coverage of the parsers themselves, not only of the drivers.
mkdir -p build
echo "ci-fuzz: building flavour fuzz into $BUILD"
BUILD_OK=1
if ! scripts/build.sh fuzz -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link \
       -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link >build/fuzz.build.log 2>&1; then
  BUILD_OK=0
  echo "ci-fuzz: FAIL: the fuzz build failed; last lines of build/fuzz.build.log:"
  tail -40 build/fuzz.build.log | sed 's/^/    /'
fi
LIST=$BUILD/fuzz/fuzzers.txt
if [ ! -f "$LIST" ]; then
  echo "ci-fuzz: $LIST missing (configure failed?)"
  echo "SUMMARY: build failed, no fuzz targets run"
  exit 1
fi
mapfile -t TARGETS < <(grep -v '^\s*$' "$LIST" | sort -u)
if [ -n "${ICS_FUZZ_ONLY:-}" ]; then
  sel=(); for t in "${TARGETS[@]}"; do [[ " $ICS_FUZZ_ONLY " == *" $t "* ]] && sel+=("$t"); done
  TARGETS=("${sel[@]}")
fi
COUNT=${#TARGETS[@]}
if [ "$COUNT" -eq 0 ]; then
  echo "ci-fuzz: no fuzz targets registered yet (no fuzz/<layer>.cmake calls ics_add_fuzzer)"
  if [ $BUILD_OK = 1 ]; then echo "SUMMARY: 0 targets (none registered yet)"; exit 0; fi
  echo "SUMMARY: build failed, 0 targets"; exit 1
fi

# After a failed build, build the fuzz targets one by one, so that those not
# depending on the broken part still run (the stage fails all the same).
if [ $BUILD_OK = 0 ]; then
  for t in "${TARGETS[@]}"; do
    cmake --build "$BUILD" -j2 --target "$t" >>build/fuzz.build.log 2>&1 ||
      echo "ci-fuzz: $t: does not build"
  done
fi

PER=$(( TOTAL / COUNT )); [ $PER -gt $MAXPER ] && PER=$MAXPER; [ $PER -lt 5 ] && PER=5
echo "ci-fuzz: $COUNT targets, ${PER}s each (total budget ${TOTAL}s$([ "${ICS_LONG:-0}" = 1 ] && echo ', long mode'))"

rm -rf "$WORK" "$ART"; mkdir -p "$WORK" "$ART"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

RESULTS=() FAILS=0 EXECS_ALL=0 NCRASH=0 NLEAK=0 NTIMEOUT=0 NOOM=0 NNOBUILD=0 NRUN=0
for t in "${TARGETS[@]}"; do
  bin=$(find "$BUILD" -type f -name "$t" -perm -u+x 2>/dev/null | head -1)
  if [ -z "$bin" ]; then
    echo "ci-fuzz: $t: FAIL: binary not built"
    RESULTS+=("$(printf '%-28s NOT BUILT' "$t")"); FAILS=$((FAILS+1)); NNOBUILD=$((NNOBUILD+1)); continue
  fi
  corpus=$WORK/$t/corpus; mkdir -p "$corpus" "$WORK/$t/artifacts"
  seeds=0
  if [ -d fuzz/corpus/$t ]; then
    cp -r fuzz/corpus/"$t"/. "$corpus"/ && seeds=$(find "$corpus" -type f | wc -l)
  fi
  dictargs=()
  if [ -f fuzz/$t.dict ] || [ -f fuzz/common.dict ]; then
    for f in fuzz/$t.dict fuzz/common.dict; do [ -f "$f" ] && { cat "$f"; echo; }; done >"$WORK/$t/merged.dict"
    dictargs=(-dict="$WORK/$t/merged.dict")
  fi
  log=$WORK/$t/fuzz.log
  echo "ci-fuzz: $t: ${PER}s from $seeds seed(s)${dictargs:+ with dictionary}"
  # shellcheck disable=SC2086
  "$bin" "$corpus" -max_total_time="$PER" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -detect_leaks=1 -artifact_prefix="$WORK/$t/artifacts/" \
    "${dictargs[@]}" ${ICS_FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  NRUN=$((NRUN+1))
  execs=$(grep -E '^stat::number_of_executed_units:' "$log" | tail -1 | awk '{print $2}')
  execs=${execs:-0}; EXECS_ALL=$((EXECS_ALL + execs))
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  kind=ok
  if grep -q 'ERROR: LeakSanitizer' "$log"; then kind=leak
  elif grep -qE 'ALARM: working on the last Unit|ERROR: libFuzzer: timeout' "$log"; then kind=timeout
  elif grep -qE 'ERROR: libFuzzer: out-of-memory|ERROR: libFuzzer: malloc\(' "$log"; then kind=oom
  elif [ $rc -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|libFuzzer)|runtime error:' "$log"; then kind=crash
  fi
  line=$(printf '%-28s %8s execs  cov %-6s %s' "$t" "$(human "$execs")" "${cov:-?}" "$kind")
  RESULTS+=("$line")
  if [ $kind = ok ]; then
    echo "ci-fuzz: $t: ok, $execs execs, cov ${cov:-?}, corpus $seeds -> $(find "$corpus" -type f | wc -l) (not committed)"
    continue
  fi
  FAILS=$((FAILS+1))
  case $kind in leak) NLEAK=$((NLEAK+1));; timeout) NTIMEOUT=$((NTIMEOUT+1));; oom) NOOM=$((NOOM+1));;
                *) NCRASH=$((NCRASH+1));; esac
  echo "ci-fuzz: $t: FAIL ($kind, exit $rc); libFuzzer's report:"
  # Indented: scripts/test.sh reads lines starting with "SUMMARY: " as ours.
  grep -vE '^#[0-9]+|^INFO: |^MERGE|^\s*$' "$log" | head -80 | sed 's/^/    /'
  for a in "$WORK/$t"/artifacts/*; do
    [ -f "$a" ] || continue
    keep=$ART/$t-$(basename "$a"); cp "$a" "$keep"
    echo "---- reproducer: $keep ($(stat -c %s "$keep") bytes) ----"
    hexdump -C "$keep" | head -64
    echo "---- replay: $ROOT/$bin $keep"
    echo "     (or with the plain build: build/gcc/fuzz/$t $keep)"
  done
done

echo
echo "ci-fuzz: per target"
for l in "${RESULTS[@]}"; do echo "  $l"; done
extra=""
[ $BUILD_OK = 0 ] && extra=", BUILD FAILED"
[ $NNOBUILD -gt 0 ] && extra="$extra, $NNOBUILD not built"
[ $NOOM -gt 0 ] && extra="$extra, $NOOM ooms"
echo "SUMMARY: $NRUN targets, $(human $EXECS_ALL) execs, $NCRASH crashes, $NLEAK leaks, $NTIMEOUT timeouts$extra"
[ $FAILS -eq 0 ] && [ $BUILD_OK = 1 ]

#!/usr/bin/env bash
# bench/policy/run.sh — identity authority and PII policy costs
# (bench/README.md, section "Identity authority"): history recording and
# prefs evaluation per inquiry (ratios vs off), KEY_ISSUE batches/s, PBKDF2.
#
# Usage: bench/policy/run.sh [--smoke] [policy_bench args: --devices N --seconds S]
# Env: ICS_BUILD_DIR (default build/release) holds bench/policy/policy_bench;
# exits 77 (skipped) when it is missing. The 2-thread runs need both cores:
# run it on an otherwise idle machine for figures worth quoting.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ICS_BUILD_DIR:-$PWD/build/release}
BIN=$BUILD/bench/policy/policy_bench
if [ ! -x "$BIN" ]; then
  echo "policy bench: $BIN not built (cmake --build $BUILD --target policy_bench)" >&2
  exit 77
fi
exec "$BIN" "$@"

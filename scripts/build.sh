#!/usr/bin/env bash
# Configures and builds one flavour of icsd into build/<name>. Idempotent.
# Usage: scripts/build.sh NAME [extra cmake args...]
#   NAME: release | gcc | clang | asan | tsan | coverage | fuzz (or any)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-release}; shift || true
dir=build/$name; mkdir -p build
args=(-G Ninja -DICS_WERROR=ON)
case $name in
  release)  args+=(-DCMAKE_BUILD_TYPE=Release -DICS_WERROR=OFF) ;;
  gcc)      args+=(-DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  clang)    args+=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan)     args+=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug
                   -DICS_SANITIZE=address,undefined -DICS_BENCH=OFF) ;;
  tsan)     args+=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
                   -DICS_SANITIZE=thread -DICS_BENCH=OFF) ;;
  coverage) args+=(-DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Debug
                   -DICS_COVERAGE=ON -DICS_BENCH=OFF) ;;
  fuzz)     args+=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
                   -DICS_FUZZ=ON -DICS_SANITIZE=address,undefined -DICS_BENCH=OFF) ;;
esac
echo "build: $name -> $dir"
cmake -S . -B "$dir" "${args[@]}" "$@" >"$dir.configure.log" 2>&1 || { mkdir -p "$dir"; cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j"$(nproc)"

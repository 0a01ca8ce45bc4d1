#!/usr/bin/env bash
# Installs the Debian packages icsd needs, only those missing. Idempotent.
# Usage: scripts/deps.sh            (build, run and test dependencies)
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang llvm libclang-rt-14-dev
  python3 openssl gcovr cppcheck clang-tidy procps iproute2
  # libraries
  liburing-dev android-libboringssl-dev libxxhash-dev libjemalloc-dev liburcu-dev
  # benchmarks and their references
  libbenchmark-dev libabsl-dev libtbb-dev libck-dev
  memcached libmemcached-tools libsasl2-modules redis-server
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these as services on install; icsd's benchmarks start their
# own instances on other ports, so the system ones only cost memory.
echo "deps: installed ${#missing[@]} packages"

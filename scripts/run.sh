#!/usr/bin/env bash
# The run command: installs what is missing, builds a release icsd and starts
# it with the embedded default: data in ./var/ics, plaintext listener on
# 127.0.0.1:11311, and on first start a generated admin credential written
# (mode 0600) to ./var/ics/admin.cred, where the `ics` CLI finds it.
# Extra arguments go to icsd (icsd --help lists them). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release >/dev/null
echo "run: build/release ready"
if [ -x build/release/server/icsd ]; then
  mkdir -p var/ics
  echo "run: starting icsd (Ctrl-C stops it cleanly); in another terminal: clients/cli/ics whoami"
  exec build/release/server/icsd --data var/ics "$@"
fi
# Until the daemon exists, show the engine working.
echo "run: icsd not built yet; running the engine demo"
exec build/release/engine/engine_demo "$@"

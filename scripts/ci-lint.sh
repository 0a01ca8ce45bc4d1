#!/usr/bin/env bash
# CI stage "lint": static analysis of every .c file of engine/ persist/ net/
# server/ clients/c/ (whatever of them exists; files are discovered, never
# listed by hand):
#   clang-tidy  with the checked-in .clang-tidy (bugprone, cert, clang-analyzer,
#               performance; the disabled checks say why there), compile
#               flags from build/clang's compile_commands.json (else build/gcc's),
#               two files at a time (xargs -P2).
#   cppcheck    --enable=warning,performance,portability with the checked-in
#               .cppcheck-suppressions (each entry says why), same compile db.
# Fails on any finding of a configured check, or when a tool itself fails.
# ICS_LINT_FILES="a.c b.c" checks only those files (by hand).
# Last line: SUMMARY: clang-tidy N files 0 findings, cppcheck N files 0 findings
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=build/lint; mkdir -p "$OUT"
START=$(date +%s)

# 1. A compile database. The clang stage of scripts/test.sh made build/clang
# already; otherwise build it (only the database matters here: a compile
# error elsewhere is that stage's failure, not this one's).
DB=""
for d in build/clang build/gcc; do
  [ -f $d/compile_commands.json ] && { DB=$d; break; }
done
if [ "$DB" = build/clang ] && [ -f build/clang/CMakeCache.txt ]; then
  # Re-configure only (seconds): new files get into the db; building is
  # the clang stage's job.
  echo "ci-lint: re-configuring build/clang for a fresh compile_commands.json"
  cmake -S . -B build/clang >build/clang.lint-configure.log 2>&1 ||
    { tail -30 build/clang.lint-configure.log | sed "s/^/    /"; echo "SUMMARY: configure of build/clang failed"; exit 1; }
elif [ -z "$DB" ]; then
  echo "ci-lint: no compile db yet: scripts/build.sh clang"
  scripts/build.sh clang >build/clang.lint-build.log 2>&1 ||
    echo "ci-lint: note: the clang build did not finish (see build/clang.lint-build.log); linting with its compile db"
  DB=build/clang
fi
if [ ! -f $DB/compile_commands.json ]; then
  tail -30 build/clang.lint-build.log | sed "s/^/    /"
  echo "SUMMARY: no compile_commands.json (configure failed)"
  exit 1
fi
echo "ci-lint: compile db $DB/compile_commands.json"

# 2. The files: every .c of the layers that exist, and that the build compiles.
LAYERS=(engine persist net server clients/c)
if [ -n "${ICS_LINT_FILES:-}" ]; then
  read -r -a CANDIDATES <<<"$ICS_LINT_FILES"
else
  CANDIDATES=()
  for l in "${LAYERS[@]}"; do
    if [ -d "$l" ]; then
      while IFS= read -r f; do CANDIDATES+=("$f"); done < <(find "$l" -name '*.c' -type f | sort)
    else
      echo "ci-lint: $l/ does not exist yet: skipped"
    fi
  done
fi
python3 - "$DB/compile_commands.json" "$ROOT" "${CANDIDATES[@]}" >"$OUT/files.txt" 2>"$OUT/notindb.txt" <<'EOF'
import json, os, sys
db, root, files = sys.argv[1], sys.argv[2], sys.argv[3:]
known = {os.path.realpath(os.path.join(e.get("directory", ""), e["file"])) for e in json.load(open(db))}
for f in files:
    if os.path.realpath(os.path.join(root, f)) in known:
        print(f)
    else:
        print(f, file=sys.stderr)
EOF
mapfile -t FILES <"$OUT/files.txt"
while IFS= read -r f; do
  [ -n "$f" ] && echo "ci-lint: $f is not in the compile db (not built by any CMakeLists yet): skipped"
done <"$OUT/notindb.txt"
N=${#FILES[@]}
if [ "$N" -eq 0 ]; then
  echo "SUMMARY: no C sources to lint yet"
  exit 0
fi
echo "ci-lint: $N files"

FAIL=0
KNOWN=0

# Findings already reported to a file's owner are listed in
# scripts/lint-baseline.txt as "path check" (no line numbers: they move).
# They are printed as known and do not fail the stage; everything else does.
split_known() { # findings-file
  local f=$1
  [ -f scripts/lint-baseline.txt ] || return 0
  python3 - "$f" scripts/lint-baseline.txt <<'EOF' || return 0
import re, sys
path, base = sys.argv[1], sys.argv[2]
entries = []
for line in open(base):
    line = line.split("#", 1)[0].split()
    if len(line) == 2:
        entries.append(tuple(line))
new, known, used = [], [], set()
for f in open(path).read().splitlines():
    m = re.match(r"^([^:]+):\d+:\d+: .*\[([^\]]+)\]$", f) or re.match(r"^([^:]+):\d+:\d+: .* \[([^\]]+)\]$", f)
    hit = None
    if m:
        for e in entries:
            if e[0] == m.group(1) and e[1] in m.group(2).split(","):
                hit = e
    if hit:
        known.append(f); used.add(hit)
    else:
        new.append(f)
open(path, "w").write("".join(x + "\n" for x in new))
open(path + ".known", "w").write("".join(x + "\n" for x in known))
EOF
  if [ -s "$f.known" ]; then
    echo "ci-lint: $(wc -l <"$f.known") known finding(s) (scripts/lint-baseline.txt; reported to their owners, not failing):"
    sed 's/^/  known: /' "$f.known"
    KNOWN=$((KNOWN + $(wc -l <"$f.known")))
  fi
}

# 3. clang-tidy, two processes, a few files each. Findings of the configured
# checks are "file:line:col: error|warning: text [check]" lines.
echo "ci-lint: clang-tidy $(clang-tidy --version | grep -oE 'version [0-9.]+')"
printf '%s\n' "${FILES[@]}" |
  timeout 600 xargs -P2 -n4 clang-tidy -p "$DB" --quiet >"$OUT/clang-tidy.log" 2>"$OUT/clang-tidy.stderr"
TRC=$?
# A diagnostic may span lines (the padding checker lists fields); its check
# name closes it in brackets. One line per finding, headers deduplicated.
python3 - "$OUT/clang-tidy.log" "$ROOT/" >"$OUT/clang-tidy.findings" <<'EOF'
import re, sys
head = re.compile(r'^(\S.*?:\d+:\d+): (warning|error): (.*)$')
seen, cur = [], None
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    m = head.match(line)
    if m:
        cur = [m.group(1).replace(sys.argv[2], ""), m.group(3)]
    elif cur is not None and not re.match(r'^\S.*?:\d+:\d+: note: ', line):
        cur[1] += " " + line.strip()
    else:
        cur = None
        continue
    c = re.search(r'\[([A-Za-z0-9.,_-]+)\]\s*$', cur[1])
    if c:
        checks = ",".join(x for x in c.group(1).split(",") if x != "-warnings-as-errors")
        text = cur[1][:c.start()].strip()
        if len(text) > 200:
            text = text[:200] + "..."
        f = "%s: %s [%s]" % (cur[0], text, checks)
        if f not in seen:
            seen.append(f)
        cur = None
print("\n".join(seen), end="\n" if seen else "")
EOF
TRAW=$(wc -l <"$OUT/clang-tidy.findings")
split_known "$OUT/clang-tidy.findings"
TN=$(wc -l <"$OUT/clang-tidy.findings")
if [ "$TN" -gt 0 ]; then
  FAIL=1
  echo "ci-lint: clang-tidy: $TN findings:"
  cat "$OUT/clang-tidy.findings"
  echo "ci-lint: (full context in $OUT/clang-tidy.log)"
elif [ $TRC -ne 0 ] && [ "$TRAW" -eq 0 ]; then
  FAIL=1
  echo "ci-lint: clang-tidy failed (rc=$TRC) without a finding line:"
  { tail -n 30 "$OUT/clang-tidy.log"; tail -n 30 "$OUT/clang-tidy.stderr"; } | sed 's/^/    /'
else
  echo "ci-lint: clang-tidy: clean"
fi

# 4. cppcheck over the same files with the same flags.
echo "ci-lint: $(cppcheck --version)"
filters=(); for f in "${FILES[@]}"; do filters+=("--file-filter=$f"); done
timeout 600 cppcheck --project="$DB/compile_commands.json" "${filters[@]}" \
  --enable=warning,performance,portability --error-exitcode=1 --inline-suppr \
  --suppressions-list=.cppcheck-suppressions --library=posix -j2 --quiet \
  -DOPENSSL_IS_BORINGSSL \
  --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
  >"$OUT/cppcheck.log" 2>&1
CRC=$?
grep -E '^[^ ].*:[0-9]+:[0-9]+: [a-z]+: .*\[[A-Za-z0-9_]+\]$' "$OUT/cppcheck.log" |
  sed "s|^$ROOT/||" | sort -u >"$OUT/cppcheck.findings"
CRAW=$(wc -l <"$OUT/cppcheck.findings")
split_known "$OUT/cppcheck.findings"
CN=$(wc -l <"$OUT/cppcheck.findings")
if [ "$CN" -gt 0 ]; then
  FAIL=1
  echo "ci-lint: cppcheck: $CN findings:"
  cat "$OUT/cppcheck.findings"
elif [ $CRC -ne 0 ] && [ "$CRAW" -eq 0 ]; then
  FAIL=1
  echo "ci-lint: cppcheck failed (rc=$CRC) without a finding line:"
  tail -30 "$OUT/cppcheck.log" | sed 's/^/    /'
else
  echo "ci-lint: cppcheck: clean"
fi

echo "ci-lint: $(( $(date +%s) - START ))s"
echo "SUMMARY: clang-tidy $N files $TN findings, cppcheck $N files $CN findings$([ $KNOWN -gt 0 ] && echo ", $KNOWN known (baseline)")"
exit $FAIL

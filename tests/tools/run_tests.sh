#!/bin/bash
# Runs the whole suite with Bazel and ends with one line
# "N passed, M failed", counting GoogleTest cases (a test target that failed
# to build or crashed before writing its results counts as one failure).
# A skipped case counts as neither: the line before names each one and why.
set -u
cd "$(dirname "$0")/../.."
bazel="${BAZEL:-bazel}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$bazel" test //... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

passed=0
failed=0
skipped=0
skip_reasons=""
testlogs=$("$bazel" info bazel-testlogs 2>/dev/null)
if [ -n "$testlogs" ] && [ -d "$testlogs" ]; then
  while read -r xml; do
    # The first <testsuites ...> element holds the totals of one target.
    line=$(grep -m1 -o '<testsuites[^>]*>' "$xml")
    [ -z "$line" ] && line=$(grep -m1 -o '<testsuite [^>]*>' "$xml")
    t=$(echo "$line" | sed -n 's/.* tests="\([0-9]*\)".*/\1/p')
    f=$(echo "$line" | sed -n 's/.* failures="\([0-9]*\)".*/\1/p')
    e=$(echo "$line" | sed -n 's/.* errors="\([0-9]*\)".*/\1/p')
    d=$(echo "$line" | sed -n 's/.* disabled="\([0-9]*\)".*/\1/p')
    t=${t:-0}; f=${f:-0}; e=${e:-0}; d=${d:-0}
    # Skips are counted per <testsuite>; the totals above include them.
    s=$(grep -o '<testsuite [^>]*skipped="[0-9]*"' "$xml" |
        sed 's/.*skipped="\([0-9]*\)"/\1/' | awk '{n += $1} END {print n + 0}')
    passed=$((passed + t - f - e - d - s))
    failed=$((failed + f + e))
    skipped=$((skipped + s))
    if [ "$s" -gt 0 ]; then
      skip_reasons+=$(grep -o '<skipped message="[^"]*"' "$xml" |
                      sed -e 's/<skipped message="//' -e 's/"$//' -e 's/&#x0A;/: /g' -e 's/^/  skipped: /')
      skip_reasons+=$'\n'
    fi
  done < <(grep -oE '^//[^ ]+ .*(PASSED|FAILED) in' "$log" | awk '{print $1}' |
           sed -e 's|^//||' -e 's|:|/|' |
           while read -r t; do [ -f "$testlogs/$t/test.xml" ] && echo "$testlogs/$t/test.xml"; done)
fi
# Targets that did not run at all: build failures and missing results.
not_run=$(grep -cE "FAILED TO BUILD|NO STATUS" "$log")
failed=$((failed + not_run))
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi
if [ "$skipped" -gt 0 ]; then
  echo "$skipped skipped (counted as neither passed nor failed):"
  printf '%s' "$skip_reasons"
fi
echo "$passed passed, $failed failed"
exit "$rc"

#!/bin/bash
# Runs the whole suite with Bazel and ends with one line
# "N passed, M failed", counting GoogleTest cases of the targets that passed
# or failed. Every other target that did not pass (TIMEOUT, FLAKY,
# INCOMPLETE, NO STATUS, FAILED TO BUILD, ...), a failed one without results
# and a failed one none of whose cases failed count as one failure each:
# the lines before name them. A skipped case counts as neither: the lines
# before name each one and why.
set -u
cd "$(dirname "$0")/../.." || exit 1
bazel="${BAZEL:-bazel}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$bazel" test //... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

passed=0
failed=0
skipped=0
skip_reasons=""
whole_targets=""
testlogs=$("$bazel" info bazel-testlogs 2>/dev/null)
# One summary line per target: "//pkg:name   [(cached) ]STATUS[ details]".
while read -r target rest; do
  status=${rest#"(cached) "}
  xml=""
  if [ -n "$testlogs" ]; then
    dir=${target#//}
    dir=${dir/://}
    [ -f "$testlogs/$dir/test.xml" ] && xml="$testlogs/$dir/test.xml"
  fi
  case "$status" in
    "FAILED in "*" out of "*)
      # Several runs (runs_per_test): their results are per run, and the
      # target's own test.xml, if any, is from another invocation.
      failed=$((failed + 1))
      whole_targets+="  $target ${status% in *}"$'\n'
      continue
      ;;
    "PASSED in "* | "FAILED in "*) ;;
    *)
      # TIMEOUT, FLAKY, INCOMPLETE, NO STATUS, FAILED TO BUILD, ...: the
      # target did not pass, and its test.xml, if any, may be from another
      # run or attempt: one failure, its cases not counted.
      failed=$((failed + 1))
      whole_targets+="  $target ${status% in *}"$'\n'
      continue
      ;;
  esac
  if [ -z "$xml" ]; then
    # No results: the target as one.
    if [ "${status%% *}" = FAILED ]; then
      failed=$((failed + 1))
      whole_targets+="  $target FAILED, no test.xml"$'\n'
    else
      passed=$((passed + 1))
    fi
    continue
  fi
  # The first <testsuites ...> element holds the totals of one target
  # (GoogleTest's); the test.xml Bazel writes itself (a shell test, a test
  # that wrote none) has a bare <testsuites> and one <testsuite ...>.
  line=$(grep -m1 -o '<testsuites [^>]*>' "$xml")
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
  skipped=$((skipped + s))
  if [ "$s" -gt 0 ]; then
    skip_reasons+=$(grep -o '<skipped message="[^"]*"' "$xml" |
                    sed -e 's/<skipped message="//' -e 's/"$//' -e 's/&#x0A;/: /g' -e 's/^/  skipped: /')
    skip_reasons+=$'\n'
  fi
  # A failed target whose cases all passed (it crashed after them, or a
  # sanitizer failed it at exit) is still one failure.
  if [ "${status%% *}" = FAILED ] && [ $((f + e)) -eq 0 ]; then
    failed=$((failed + 1))
    whole_targets+="  $target FAILED, though no case did"$'\n'
  else
    failed=$((failed + f + e))
  fi
done < <(grep -E '^//[^ ]+ +(\(cached\) )?[A-Z]{2,}( [A-Z]+)*(,| in |$)' "$log")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi
if [ -n "$whole_targets" ]; then
  echo "targets counted as one failure each:"
  printf '%s' "$whole_targets"
fi
if [ "$skipped" -gt 0 ]; then
  echo "$skipped skipped (counted as neither passed nor failed):"
  printf '%s' "$skip_reasons"
fi
echo "$passed passed, $failed failed"
exit "$rc"

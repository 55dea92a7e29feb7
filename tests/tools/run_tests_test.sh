#!/bin/bash
# run_tests.sh's summary, from a fake bazel: its `bazel test` output and the
# test.xml files of bazel-testlogs. Every target that did not pass must add
# to "M failed", whatever its status line says; each case of a target that
# ran to the end counts once.
set -u
script="$TEST_SRCDIR/$TEST_WORKSPACE/tests/tools/run_tests.sh"
work="$TEST_TMPDIR/work"
rm -rf "$work"
mkdir -p "$work/tree/tests/tools" "$work/testlogs"
cp "$script" "$work/tree/tests/tools/run_tests.sh"

# Writes $work/testlogs/<dir>/test.xml: tests, failures, errors, skipped.
xml() {
  mkdir -p "$work/testlogs/$1"
  cat > "$work/testlogs/$1/test.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="$2" failures="$3" disabled="0" errors="$4" time="0.1" name="AllTests">
  <testsuite name="S" tests="$2" failures="$3" disabled="0" skipped="$5" errors="$4" time="0.1">
  </testsuite>
</testsuites>
XML
}
xml pkg/passes 3 0 0 0           # 3 passed
xml pkg/cached 2 0 0 1           # 1 passed, 1 skipped
xml pkg/fails 4 1 0 0            # 3 passed, 1 failed
xml pkg/dies_after_its_cases 2 0 0 0  # 2 passed, then it crashed: 1 failed
xml pkg/timeout 5 0 0 0          # stale, from an earlier run: 1 failed
xml pkg/flaky 6 0 0 0            # the last attempt passed: 1 failed
xml pkg/repeated 7 0 0 0         # stale (runs_per_test writes run_*_of_*/): 1 failed
xml pkg/repeated/run_1_of_2 7 1 0 0
xml pkg/repeated/run_2_of_2 7 0 0 0
mkdir -p "$work/testlogs/pkg/lost"  # failed without results: 1 failed
# As Bazel writes it for a test that wrote none (a shell test; a crash).
generated() {
  mkdir -p "$work/testlogs/$1"
  cat > "$work/testlogs/$1/test.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="$1" tests="1" failures="0" errors="$2">
    <testcase name="$1" status="run" duration="0" time="0"></testcase>
  </testsuite>
</testsuites>
XML
}
generated pkg/shell 0            # 1 passed
generated pkg/crashed 1          # 1 failed

cat > "$work/bazel_output" <<'OUT'
INFO: Build completed, 9 tests FAILED, 120 total actions
//pkg:passes                                                            PASSED in 0.3s
//pkg:cached                                                   (cached) PASSED in 0.1s
//pkg:fails                                                             FAILED in 0.2s
//pkg:dies_after_its_cases                                              FAILED in 0.4s
//pkg:timeout                                                          TIMEOUT in 300.1s
//pkg:flaky                                          FLAKY, failed in 1 out of 2 in 3.4s
//pkg:repeated                                             FAILED in 1 out of 2 in 1.5s
//pkg:lost                                                              FAILED in 0.1s
//pkg:shell                                                             PASSED in 0.1s
//pkg:crashed                                                           FAILED in 0.1s
//pkg:incomplete                                                        INCOMPLETE
//pkg:no_status                                                          NO STATUS
//pkg:unbuilt                                                      FAILED TO BUILD

Executed 10 out of 13 tests: 3 tests pass, 1 fails to build and 9 fail locally.
OUT

cat > "$work/bazel" <<FAKE
#!/bin/bash
case "\$1" in
  test) cat "$work/bazel_output"; exit 3 ;;
  info) echo "$work/testlogs" ;;
  *) exit 2 ;;
esac
FAKE
chmod +x "$work/bazel"

out=$(BAZEL="$work/bazel" "$work/tree/tests/tools/run_tests.sh")
rc=$?
last=$(printf '%s\n' "$out" | tail -n 1)
status=0
if [ "$last" != "10 passed, 10 failed" ]; then
  echo "expected the last line '10 passed, 10 failed', got '$last'; the whole output:"
  printf '%s\n' "$out"
  status=1
fi
if [ "$rc" -ne 3 ]; then
  echo "expected bazel's exit code 3, got $rc"
  status=1
fi
exit "$status"

// Waiting for a sandboxed service in tests: its launch, its output to end of
// file, then its exit status.
#ifndef CAPBROKER_TESTS_SANDBOX_LAUNCHED_RUN_H_
#define CAPBROKER_TESTS_SANDBOX_LAUNCHED_RUN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/sandbox/sandbox.h"

namespace capbroker::testing {

// A guard, not a wait: a healthy service ends far sooner.
inline constexpr int kServiceTimeoutMs = 20000;

// Launches `spec` as the broker does (StartLaunch, then Continue each time
// the report pipe is readable), but waiting in between, as a test may. A
// failed launch's child is reaped and its cgroup removed before this
// returns. kDeadlineExceeded (the child killed and reaped) when the launch
// takes kServiceTimeoutMs.
absl::StatusOr<sandbox::LaunchedProcess> LaunchAndWait(const sandbox::SandboxSpec& spec);

struct Finished {
  std::string output;
  int wait_status = -1;
};

// Reads `process.output` to end of file, then reaps the process.
// kDeadlineExceeded (after killing it) when that takes kServiceTimeoutMs.
absl::StatusOr<Finished> RunToEnd(sandbox::LaunchedProcess& process);

// Reads from `fd` (non-blocking) until `text` has arrived; returns all read.
absl::StatusOr<std::string> ReadUntil(int fd, absl::string_view text);

// The path of a file in the test's runfiles, made absolute and resolved.
std::string RunfileRealPath(absl::string_view workspace_relative);

}  // namespace capbroker::testing

#endif  // CAPBROKER_TESTS_SANDBOX_LAUNCHED_RUN_H_

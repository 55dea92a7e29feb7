// Waiting for a sandboxed service in tests: its output to end of file, then
// its exit status.
#ifndef CAPBROKER_TESTS_SANDBOX_LAUNCHED_RUN_H_
#define CAPBROKER_TESTS_SANDBOX_LAUNCHED_RUN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/sandbox/sandbox.h"

namespace capbroker::testing {

// A guard, not a wait: a healthy service ends far sooner.
inline constexpr int kServiceTimeoutMs = 20000;

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

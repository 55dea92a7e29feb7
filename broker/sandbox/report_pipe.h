// The child's reports to the launch (the parent), over a close-on-exec pipe.
//
// Between clone and execve the child tells the parent two kinds of things:
// a best-effort protection it had to leave out ("missing"), and the failure
// that stops the launch (a status: code and message). execve closes the
// pipe (it is close-on-exec), so end of file without a failure means the
// program is running, unless the child died before execve, which closes it
// too (the launch tells them apart: CheckReachedExecve). Each record is one
// write(2) of at most PIPE_BUF bytes, so it arrives whole.
//
// The parent reads the pipe as it becomes readable, from its event loop
// (ChildReportReader), never waiting on it: a child stuck in its setup (on a
// hung file system) must not stall the broker.
#ifndef CAPBROKER_BROKER_SANDBOX_REPORT_PIPE_H_
#define CAPBROKER_BROKER_SANDBOX_REPORT_PIPE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker::sandbox {

// Longest message a record carries; longer ones are cut.
inline constexpr size_t kMaxReportMessage = 1024;

// The exit code of a child that reported a failure.
inline constexpr int kChildFailedExitCode = 127;

// The child's end. Not thread-safe; the child is single-threaded.
class ChildReporter {
 public:
  // `fd` is borrowed: the write end of the report pipe.
  explicit ChildReporter(int fd) : fd_(fd) {}

  // The write end moved (the fd layout renumbers it).
  void set_fd(int fd) { fd_ = fd; }
  int fd() const { return fd_; }

  // A best-effort protection left out: `tag` says which (the caller's
  // numbering), `entry` is the line for LaunchedProcess::missing.
  void Missing(int tag, absl::string_view entry);

  // Reports `status` (not OK) and exits with kChildFailedExitCode.
  [[noreturn]] void Fail(const absl::Status& status);

 private:
  void Write(char kind, int code, absl::string_view message);

  int fd_;
};

// What the parent learned once the pipe reached end of file.
struct MissingReport {
  int tag;
  std::string entry;
};

struct ChildReport {
  std::vector<MissingReport> missing;
  // OK when the child reached execve; else why it stopped.
  absl::Status failure;
};

// The parent's end: collects the records as they arrive.
class ChildReportReader {
 public:
  // Reads what `fd` (borrowed: the read end, non-blocking) holds now,
  // without waiting. nullopt until end of file; then the whole report.
  // kInternal for a malformed record or a report longer than a handful of
  // records; a failed read(2) as it is.
  absl::StatusOr<std::optional<ChildReport>> ReadAvailable(int fd);

 private:
  std::string bytes_;
};

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_REPORT_PIPE_H_

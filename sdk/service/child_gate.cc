#include "sdk/service/child_gate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/process_controls.h"

namespace capbroker {
namespace {

// Closes every fd of this process but those in `keep`.
absl::Status CloseAllBut(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int next = 0;
  for (int fd : keep) {
    if (fd < 0 || static_cast<unsigned int>(fd) < next) continue;
    if (static_cast<unsigned int>(fd) > next && close_range(next, fd - 1, 0) != 0) {
      return ErrnoStatus(errno, absl::StrCat("close_range(", next, ", ", fd - 1, ")"));
    }
    next = static_cast<unsigned int>(fd) + 1;
  }
  if (close_range(next, ~0u, 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("close_range(", next, ", ~0)"));
  }
  return absl::OkStatus();
}

// Every fd but 0, 1, 2 and `keep` closed, first, whatever the rest does:
// a child that failed its setup must hold no copy of what it inherited
// either; then not dumpable, SIGKILL at the parent's death
// (ChildGate::SetUpChild). The first failure.
absl::Status SetUp(pid_t parent, std::vector<int> keep) {
  keep.insert(keep.end(), {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO});
  CB_RETURN_IF_ERROR(CloseAllBut(std::move(keep)));
  CB_RETURN_IF_ERROR(MakeNotDumpable());
  CB_RETURN_IF_ERROR(DieWithParent());
  if (getppid() != parent) return absl::UnavailableError("the main process is gone");
  return absl::OkStatus();
}

// The child's report on the set-up pipe: kSetUpDone alone when it is set
// up, else kSetUpFailed and why. One write of at most kMaxReportBytes
// (below PIPE_BUF: all or nothing), into an empty pipe.
constexpr char kSetUpDone = 'K';
constexpr char kSetUpFailed = 'F';
constexpr size_t kMaxReportBytes = 512;

void Report(int fd, const absl::Status& set_up) {
  std::string report(1, kSetUpDone);
  if (!set_up.ok()) {
    report = absl::StrCat(std::string(1, kSetUpFailed), set_up.message());
    report.resize(std::min(report.size(), kMaxReportBytes));
  }
  // A failed write is no news to the main process: a report it does not
  // get is a failed setup (fail closed). With no reader left (the main
  // process is gone) the write raises SIGPIPE, which ends this child as
  // PR_SET_PDEATHSIG would.
  (void)RetryEintr([&] { return write(fd, report.data(), report.size()); });
}

// Reads `fd` (a gate's pipe), one byte at a time, until end of file; what
// it read, at most `max_bytes` (more: an error).
absl::StatusOr<std::string> ReadToEndOfFile(int fd, size_t max_bytes) {
  std::string read_bytes;
  char byte = 0;
  ssize_t n = 0;
  while ((n = RetryEintr([&] { return read(fd, &byte, 1); })) > 0) {
    if (read_bytes.size() == max_bytes) {
      return absl::OutOfRangeError(absl::StrCat("more than ", max_bytes, " bytes on the gate"));
    }
    read_bytes.push_back(byte);
  }
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(gate, fd=", fd, ")"));
  return read_bytes;
}

// What the main process makes of child `pid`'s report: OK only for
// kSetUpDone alone.
absl::Status ReadReport(const absl::StatusOr<std::string>& report, pid_t pid) {
  if (!report.ok()) {
    return absl::Status(report.status().code(),
                        absl::StrCat("cannot wait for child ", pid,
                                     " to set itself up: ", report.status().message()));
  }
  if (*report == std::string(1, kSetUpDone)) return absl::OkStatus();
  if (!report->empty() && report->front() == kSetUpFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("child ", pid, " failed to set itself up: ",
                     Shown(absl::string_view(*report).substr(1), kMaxShownReasonBytes)));
  }
  if (report->empty()) {
    return absl::UnavailableError(
        absl::StrCat("child ", pid, " said nothing of its setup (it died, or its write failed)"));
  }
  return absl::InternalError(
      absl::StrCat("child ", pid, " sent a malformed setup report '", Shown(*report), "'"));
}

}  // namespace

absl::StatusOr<ChildGate> ChildGate::Create() {
  int set_up[2] = {-1, -1};
  if (pipe2(set_up, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2 for a child's gate");
  UniqueFd set_up_read(set_up[0]);
  UniqueFd set_up_write(set_up[1]);
  int opening[2] = {-1, -1};
  if (pipe2(opening, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2 for a child's gate");
  return ChildGate(std::move(set_up_read), std::move(set_up_write), UniqueFd(opening[0]),
                   UniqueFd(opening[1]));
}

absl::Status ChildGate::SetUpChild(pid_t parent, std::vector<int> keep) {
  // The main process's ends go first, whatever follows: its close of the
  // open pipe must be that pipe's end of file.
  set_up_read_.reset();
  open_write_.reset();
  keep.insert(keep.end(), {set_up_write_.get(), open_read_.get()});
  absl::Status set_up = SetUp(parent, std::move(keep));
  Report(set_up_write_.get(), set_up);
  // Closed whatever the report: the main process must not wait for ever.
  set_up_write_.reset();
  return set_up;
}

absl::Status ChildGate::AwaitOpen() {
  absl::StatusOr<std::string> opened = ReadToEndOfFile(open_read_.get(), 0);
  open_read_.reset();
  return opened.status();
}

absl::Status ChildGate::AwaitChildSetUp(pid_t child) {
  // Without this the child's close (or death) would bring no end of file.
  set_up_write_.reset();
  open_read_.reset();
  absl::Status set_up = ReadReport(ReadToEndOfFile(set_up_read_.get(), kMaxReportBytes), child);
  set_up_read_.reset();
  if (set_up.ok()) return set_up;
  // Fail closed: a child not known to be set up (to have shed what it
  // inherited, among the rest) goes, and is gone before this process goes
  // on, which holds its own copies of everything until then.
  if (kill(child, SIGKILL) != 0) {
    return ErrnoStatus(errno, absl::StrCat("kill(", child, ", SIGKILL) after ", set_up.message()));
  }
  if (RetryEintr([&] { return waitpid(child, nullptr, 0); }) != child) {
    return ErrnoStatus(errno, absl::StrCat("waitpid(", child, ") after ", set_up.message()));
  }
  return absl::Status(set_up.code(), absl::StrCat(set_up.message(), " (child ", child, " killed)"));
}

}  // namespace capbroker

#include "tests/sandbox/launched_run.h"

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace capbroker::testing {
namespace {

// Reads what is there; false at end of file or on error.
absl::StatusOr<bool> ReadSome(int fd, std::string* out) {
  pollfd p{fd, POLLIN, 0};
  int ready = poll(&p, 1, kServiceTimeoutMs);
  if (ready == 0) return absl::DeadlineExceededError("no output from the service");
  if (ready < 0) return absl::ErrnoToStatus(errno, "poll");
  char buffer[4096];
  ssize_t n = read(fd, buffer, sizeof buffer);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return true;
    return absl::ErrnoToStatus(errno, "read");
  }
  out->append(buffer, n);
  return n > 0;
}

}  // namespace

absl::StatusOr<Finished> RunToEnd(sandbox::LaunchedProcess& process) {
  Finished finished;
  while (true) {
    absl::StatusOr<bool> more = ReadSome(process.output.get(), &finished.output);
    if (!more.ok()) {
      syscall(SYS_pidfd_send_signal, process.pidfd.get(), SIGKILL, nullptr, 0);
      waitpid(process.pid, nullptr, 0);
      return absl::Status(more.status().code(),
                          absl::StrCat(more.status().message(), "; output so far:\n",
                                       finished.output));
    }
    if (!*more) break;
  }
  if (waitpid(process.pid, &finished.wait_status, 0) != process.pid) {
    return absl::ErrnoToStatus(errno, "waitpid");
  }
  return finished;
}

absl::StatusOr<std::string> ReadUntil(int fd, absl::string_view text) {
  std::string out;
  while (!absl::StrContains(out, text)) {
    absl::StatusOr<bool> more = ReadSome(fd, &out);
    if (!more.ok()) return more.status();
    if (!*more) return absl::NotFoundError(absl::StrCat("end of file before '", text, "': ", out));
  }
  return out;
}

std::string RunfileRealPath(absl::string_view workspace_relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  std::string path = (srcdir != nullptr && workspace != nullptr)
                         ? absl::StrCat(srcdir, "/", workspace, "/", workspace_relative)
                         : std::string(workspace_relative);
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) return path;
  return resolved;
}

}  // namespace capbroker::testing

#include "tests/sandbox/launched_run.h"

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

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

// Reaps an abandoned child (a test may wait) and removes its cgroup.
void Bury(sandbox::AbandonedChild child) {
  if (waitpid(child.pid, nullptr, 0) != child.pid) {
    std::fprintf(stderr, "waitpid(%d): %s\n", child.pid, strerror(errno));
  }
  if (!child.cgroup.empty() && rmdir(child.cgroup.c_str()) != 0) {
    std::fprintf(stderr, "rmdir(%s): %s\n", child.cgroup.c_str(), strerror(errno));
  }
}

}  // namespace

absl::StatusOr<sandbox::LaunchedProcess> LaunchAndWait(const sandbox::SandboxSpec& spec) {
  absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> launch = sandbox::StartLaunch(spec);
  if (!launch.ok()) return launch.status();
  sandbox::PendingLaunch& pending = **launch;
  while (true) {
    absl::StatusOr<std::optional<sandbox::LaunchedProcess>> step = pending.Continue();
    if (!step.ok()) {
      Bury(pending.Abandon());
      return step.status();
    }
    if (step->has_value()) return std::move(**step);
    pollfd p{pending.report_fd(), POLLIN, 0};
    int ready = poll(&p, 1, kServiceTimeoutMs);
    if (ready <= 0) {
      absl::Status status = ready == 0 ? absl::DeadlineExceededError("the launch did not finish")
                                       : absl::ErrnoToStatus(errno, "poll(report pipe)");
      Bury(pending.Abandon());
      return status;
    }
  }
}

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

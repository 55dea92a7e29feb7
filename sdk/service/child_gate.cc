#include "sdk/service/child_gate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

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

// Not dumpable, SIGKILL at the parent's death, every fd but 0, 1, 2 and
// `keep` closed (ChildGate::SetUpChild).
absl::Status SetUp(pid_t parent, std::vector<int> keep) {
  if (prctl(PR_SET_DUMPABLE, 0) != 0) {
    return ErrnoStatus(errno, "prctl(PR_SET_DUMPABLE, 0)");
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    return ErrnoStatus(errno, "prctl(PR_SET_PDEATHSIG)");
  }
  if (getppid() != parent) return absl::UnavailableError("the main process is gone");
  keep.insert(keep.end(), {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO});
  return CloseAllBut(std::move(keep));
}

// Reads `fd` (a gate's pipe) until end of file.
absl::Status AwaitEndOfFile(int fd) {
  char byte = 0;
  ssize_t n = 0;
  while ((n = RetryEintr([&] { return read(fd, &byte, 1); })) > 0) {
  }
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(gate, fd=", fd, ")"));
  return absl::OkStatus();
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
  // Closed even when the setup failed: the main process must not wait for
  // ever, and the child then waits at the gate and exits (child_gate.h).
  set_up_write_.reset();
  return set_up;
}

absl::Status ChildGate::AwaitOpen() {
  absl::Status opened = AwaitEndOfFile(open_read_.get());
  open_read_.reset();
  return opened;
}

absl::Status ChildGate::AwaitChildSetUp(pid_t child) {
  // Without this the child's close (or death) would bring no end of file.
  set_up_write_.reset();
  open_read_.reset();
  absl::Status set_up = AwaitEndOfFile(set_up_read_.get());
  set_up_read_.reset();
  if (set_up.ok()) return set_up;
  // Fail closed: a child not known to have shed what it inherited goes,
  // and is gone before this process goes on.
  if (kill(child, SIGKILL) != 0) {
    return ErrnoStatus(errno, absl::StrCat("kill(", child, ", SIGKILL) after ", set_up.message()));
  }
  if (RetryEintr([&] { return waitpid(child, nullptr, 0); }) != child) {
    return ErrnoStatus(errno, absl::StrCat("waitpid(", child, ") after ", set_up.message()));
  }
  return absl::Status(set_up.code(),
                      absl::StrCat(set_up.message(), " (child ", child, " killed)"));
}

}  // namespace capbroker

#include "sdk/service/child_gate.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

}  // namespace

absl::StatusOr<ChildGate> ChildGate::Create() {
  int ends[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    return ErrnoStatus(errno, "socketpair(AF_UNIX, SOCK_STREAM) for a child's gate");
  }
  return ChildGate(UniqueFd(ends[0]), UniqueFd(ends[1]));
}

absl::Status ChildGate::SetUpChild(pid_t parent, std::vector<int> keep) {
  // Ours goes first, whatever follows: the main process's close of its end
  // must be the gate's end of file.
  parent_end_.reset();
  keep.push_back(child_end_.get());
  absl::Status set_up = SetUp(parent, std::move(keep));
  // Told even when the setup failed: the main process must not wait for
  // ever, and the child then waits at the gate and exits (child_gate.h).
  // MSG_NOSIGNAL: a main process gone is no SIGPIPE here.
  const char byte = 0;
  if (RetryEintr([&] { return send(child_end_.get(), &byte, 1, MSG_NOSIGNAL); }) != 1 &&
      set_up.ok()) {
    set_up = ErrnoStatus(errno, "send(gate)");
  }
  return set_up;
}

absl::Status ChildGate::AwaitOpen() {
  char byte = 0;
  ssize_t n = 0;
  while ((n = RetryEintr([&] { return read(child_end_.get(), &byte, 1); })) > 0) {
  }
  absl::Status opened = n == 0 ? absl::OkStatus() : ErrnoStatus(errno, "read(gate)");
  child_end_.reset();
  return opened;
}

absl::Status ChildGate::AwaitChildSetUp() {
  // Without this the child's death would bring no end of file.
  child_end_.reset();
  char byte = 0;
  if (RetryEintr([&] { return read(parent_end_.get(), &byte, 1); }) < 0) {
    return ErrnoStatus(errno, "read(gate of a child)");
  }
  return absl::OkStatus();
}

}  // namespace capbroker

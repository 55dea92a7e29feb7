#include "broker/sandbox/signals.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {

namespace {

// The kernel's struct sigaction (x86_64). The raw call is needed for the two
// real-time signals glibc keeps for itself (its sigaction refuses them),
// which a broker may still have inherited as ignored.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

}  // namespace

absl::Status ResetSignals() {
  KernelSigaction action = {SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (syscall(SYS_rt_sigaction, sig, &action, nullptr, sizeof action.mask) != 0) {
      return ErrnoStatus(errno, absl::StrCat("rt_sigaction(", sig, ", SIG_DFL)"));
    }
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) {
    return ErrnoStatus(errno, "sigprocmask(SIG_SETMASK, {})");
  }
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox

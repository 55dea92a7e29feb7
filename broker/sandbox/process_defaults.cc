#include "broker/sandbox/process_defaults.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {
namespace {

// ioprio_set(2): glibc has no wrapper. Class NONE with level 0 is the
// default (the kernel derives the priority from the nice value); setting it
// needs no privilege.
constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassNone = 0;

absl::Status ResetOomScoreAdj(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/oom_score_adj");
  CB_ASSIGN_OR_RETURN(UniqueFd owned, TakeFd(open(path.c_str(), O_WRONLY | O_CLOEXEC),
                                             absl::StrCat("open(", path, ")")));
  ssize_t n = RetryEintr([&] { return write(owned.get(), "0", 1); });
  if (n == 1) return absl::OkStatus();
  // EACCES only for a value below the floor the broker may not cross, so
  // one above 0 (the floor is at most the value).
  if (n < 0 && errno == EACCES) return absl::OkStatus();
  return ErrnoStatus(n < 0 ? errno : EIO, absl::StrCat("write(", path, ", \"0\")"));
}

}  // namespace

absl::Status ResetInheritedScheduling(pid_t pid) {
  absl::Status oom = ResetOomScoreAdj(pid);
  if (!oom.ok()) return oom;
  // PRIO_PROCESS with a pid acts on that thread alone: the child has only
  // the one. EACCES: a positive nice value the broker may not lower.
  if (setpriority(PRIO_PROCESS, pid, 0) != 0 && errno != EACCES) {
    return ErrnoStatus(errno, absl::StrCat("setpriority(PRIO_PROCESS, ", pid, ", 0)"));
  }
  if (syscall(SYS_ioprio_set, kIoprioWhoProcess, pid, kIoprioClassNone << 13) != 0) {
    return ErrnoStatus(errno, absl::StrCat("ioprio_set(IOPRIO_WHO_PROCESS, ", pid,
                                           ", IOPRIO_CLASS_NONE)"));
  }
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox

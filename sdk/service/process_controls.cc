#include "sdk/service/process_controls.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "sdk/base/syscall.h"

namespace capbroker {
namespace {

// prctl(`option`, `value`), named `call` in the error, which says what to
// allow when a filter refused it.
absl::Status Prctl(int option, unsigned long value, absl::string_view call) {
  if (prctl(option, value, 0UL, 0UL, 0UL) == 0) return absl::OkStatus();
  const int errnum = errno;
  absl::Status failed = ErrnoStatus(errnum, call);
  if (errnum != EPERM) return failed;
  return absl::Status(failed.code(),
                      absl::StrCat(failed.message(),
                                   ": the sandbox's system call filter must allow it "
                                   "(services/README.md, \"What the sandbox must allow\")"));
}

}  // namespace

absl::Status MakeNotDumpable() { return Prctl(PR_SET_DUMPABLE, 0, "prctl(PR_SET_DUMPABLE, 0)"); }

absl::Status DieWithParent() {
  return Prctl(PR_SET_PDEATHSIG, SIGKILL, "prctl(PR_SET_PDEATHSIG, SIGKILL)");
}

}  // namespace capbroker

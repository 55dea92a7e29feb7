#include "broker/sandbox/rlimits.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {

absl::Status ApplyRlimits(absl::Span<const Rlimit> limits) {
  for (const Rlimit& limit : limits) {
    if (limit.value == 0) continue;
    rlimit value = {static_cast<rlim_t>(limit.value), static_cast<rlim_t>(limit.value)};
    if (setrlimit(static_cast<__rlimit_resource>(limit.resource), &value) != 0) {
      return ErrnoStatus(errno, absl::StrCat("setrlimit(", limit.name, ", ", limit.value, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox

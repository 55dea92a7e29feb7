#include "broker/sandbox/rlimits.h"

#include <algorithm>
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

uint64_t DefaultProcesses(const ResourceLimits& limits, rlim_t broker_hard_limit) {
  if (limits.processes != 0 || limits.pids_max != 0) return 0;
  if (broker_hard_limit == RLIM_INFINITY) return kDefaultProcesses;
  return std::min<uint64_t>(kDefaultProcesses, broker_hard_limit);
}

std::string NoDefaultProcessesEntry(uint64_t default_processes, uid_t uid) {
  return absl::StrCat("processes: no default limit (", default_processes,
                      ") without privateUsers: RLIMIT_NPROC would count every process of uid ",
                      uid, " on the host; set limits.processes or pidsMax");
}

}  // namespace capbroker::sandbox

// Resource limits (setrlimit) of the service.
#ifndef CAPBROKER_BROKER_SANDBOX_RLIMITS_H_
#define CAPBROKER_BROKER_SANDBOX_RLIMITS_H_

#include <sys/resource.h>

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "broker/sandbox/settings.h"

namespace capbroker::sandbox {

struct Rlimit {
  int resource;      // RLIMIT_*
  const char* name;  // "RLIMIT_NOFILE", for messages
  uint64_t value;    // soft and hard limit; 0 leaves the limit as it is
};

// Sets each limit whose value is not 0, soft and hard alike, so that the
// service cannot raise it again. Raising a hard limit needs
// CAP_SYS_RESOURCE in the initial user namespace (not in the service's):
// a limit above the broker's own hard limit fails with EPERM.
absl::Status ApplyRlimits(absl::Span<const Rlimit> limits);

// The default RLIMIT_NPROC of a service whose `limits` set neither
// `processes` nor `pids_max`: kDefaultProcesses, or `broker_hard_limit`
// (the broker's own hard RLIMIT_NPROC; RLIM_INFINITY for none) when that
// is lower, since the service cannot be given more. 0, no default, when
// either is set: the policy bounds the service's processes itself.
uint64_t DefaultProcesses(const ResourceLimits& limits, rlim_t broker_hard_limit);

// The `missing` entry of a service running as `uid` that would get
// `default_processes` (DefaultProcesses, not 0) but has no user namespace
// of its own, where RLIMIT_NPROC would count every process of its uid on
// the host: it gets no default, and the entry says so and what to set.
std::string NoDefaultProcessesEntry(uint64_t default_processes, uid_t uid);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_RLIMITS_H_

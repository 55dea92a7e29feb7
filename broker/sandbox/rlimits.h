// Resource limits (setrlimit) of the service.
#ifndef CAPBROKER_BROKER_SANDBOX_RLIMITS_H_
#define CAPBROKER_BROKER_SANDBOX_RLIMITS_H_

#include <sys/resource.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

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

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_RLIMITS_H_

// The host's cgroup layout, for sandbox tests.
#ifndef CAPBROKER_TESTS_SANDBOX_HOST_FILES_H_
#define CAPBROKER_TESTS_SANDBOX_HOST_FILES_H_

#include <string>

namespace capbroker::testing {

// Where a cgroup v2 hierarchy is mounted that this process can write, or ""
// (Debian's hybrid layout mounts it at /sys/fs/cgroup/unified).
std::string WritableCgroup2Mount();

}  // namespace capbroker::testing

#endif  // CAPBROKER_TESTS_SANDBOX_HOST_FILES_H_

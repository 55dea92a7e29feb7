// Reading the host's files in sandbox tests: /proc entries, cgroup files.
#ifndef CAPBROKER_TESTS_SANDBOX_HOST_FILES_H_
#define CAPBROKER_TESTS_SANDBOX_HOST_FILES_H_

#include <string>

namespace capbroker::testing {

// The whole file, "" if it cannot be read.
std::string ReadWholeFile(const std::string& path);

// Where a cgroup v2 hierarchy is mounted that this process can write, or ""
// (Debian's hybrid layout mounts it at /sys/fs/cgroup/unified).
std::string WritableCgroup2Mount();

}  // namespace capbroker::testing

#endif  // CAPBROKER_TESTS_SANDBOX_HOST_FILES_H_

// struct clone_args for clone3(2), for the launcher and the tests that
// choose a child's pid.
//
// Declared here because <linux/sched.h>, which has it, clashes with
// glibc's <sched.h>.
#ifndef CAPBROKER_BROKER_SANDBOX_CLONE_ARGS_H_
#define CAPBROKER_BROKER_SANDBOX_CLONE_ARGS_H_

#include <cstdint>

namespace capbroker::sandbox {

// struct clone_args of <linux/sched.h> up to `cgroup` (CLONE_ARGS_SIZE_VER2).
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};
static_assert(sizeof(CloneArgs) == 88, "clone_args v2 is 88 bytes");

// CLONE_INTO_CGROUP (Linux 5.7): the child starts in the cgroup `cgroup`.
inline constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_CLONE_ARGS_H_

// The highest system call number the service's filter lets through to its
// rules: every number above it fails with ENOSYS.
//
// The filter is allow-by-default with a deny list, and a deny list can only
// name the calls that existed when it was written: a kernel newer than the
// list (6.18 here, against libseccomp 2.5.4's table) offers calls the list
// never saw (mount-family calls such as open_tree_attr, listmount,
// statmount, the *xattrat calls, ...), and they would be allowed. So the
// number above which nothing is allowed is fixed at the newest call the list
// was reviewed against, and what lies above it fails with ENOSYS, as systemd
// does for system calls it does not know: the kernel's own answer for a call
// it lacks, which every libc and runtime already handles by falling back.
//
// libseccomp 2.5 can say neither "above N" nor "every number" in a rule, so
// the check is classic BPF of our own, run before libseccomp's program.
#ifndef CAPBROKER_BROKER_SANDBOX_SYSCALL_CEILING_H_
#define CAPBROKER_BROKER_SANDBOX_SYSCALL_CEILING_H_

#include <linux/filter.h>

#include <cstdint>
#include <vector>

namespace capbroker::sandbox {

// Numbers at or above this bit are no x86_64 system calls (x32 marks its
// calls with it): the filter that follows kills them, and the ceiling leaves
// them to it.
inline constexpr uint32_t kX32SyscallBit = 0x40000000;

// Instructions to put before a seccomp filter: for a call of architecture
// `audit_arch` (an AUDIT_ARCH_* value) whose number is above `highest` and
// below kX32SyscallBit, return ERRNO(ENOSYS); for anything else, go on to
// the instruction that follows them (the filter's first). They leave no
// state the filter relies on: a libseccomp program loads what it needs.
std::vector<sock_filter> SyscallCeiling(uint32_t audit_arch, uint32_t highest);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_SYSCALL_CEILING_H_

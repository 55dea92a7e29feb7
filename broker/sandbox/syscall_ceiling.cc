#include "broker/sandbox/syscall_ceiling.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <stddef.h>

namespace capbroker::sandbox {

std::vector<sock_filter> SyscallCeiling(uint32_t audit_arch, uint32_t highest) {
  // Jump offsets count from the next instruction; kRest is the index of
  // the first instruction after these six.
  constexpr uint8_t kRest = 6;
  return {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 0, kRest - 2),
      /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32SyscallBit, kRest - 4, 0),
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, highest, 0, kRest - 5),
      /* 5 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
  };
}

}  // namespace capbroker::sandbox

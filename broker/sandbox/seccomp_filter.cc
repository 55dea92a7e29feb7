#include "broker/sandbox/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/sandbox/syscall_ceiling.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {
namespace {

// clone(2) flags that create namespaces. CLONE_NEWTIME is left out: clone
// cannot take it (it shares bits with the exit signal); unshare and clone3
// can, and both are denied whole.
constexpr uint64_t kCloneNamespaceFlags[] = {
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};

// The one personality(2) value allowed: PER_LINUX, the default. As in
// systemd's LockPersonality=, even the query (0xffffffff) is refused:
// libseccomp 2.5 takes one comparison per argument and rule, so "neither 0
// nor 0xffffffff" cannot be said in one rule, and a deny list cannot be
// narrowed by an allow rule.
constexpr uint64_t kPersonalityDefault = 0;

// The one parent-death signal a service may set: SIGKILL, which the sandbox
// sets before the filter (credentials.h) and ForkingServer's workers set
// again. Clearing it, or setting another signal, would let the service
// outlive its broker: as pid 1 of its pid namespace it ignores every
// signal left at its default action but SIGKILL.
constexpr uint64_t kParentDeathSignal = SIGKILL;

// The file mode bits no service may set (systemd's RestrictSUIDSGID=). The
// detached mount of a directory grant is nosuid only in the sandbox's view:
// on the host, a setuid program the service left in a writable grant would
// run as the service's uid (shared by every service of a root broker) for
// whoever starts it.
constexpr uint64_t kSetIdBits[] = {S_ISUID, S_ISGID};

// The calls that take a mode, and which argument it is. The kernel reads a
// umode_t: the rules test the bits themselves, whatever lies above them.
// mkdir and mkdirat: the kernel drops S_ISGID from their mode (a directory
// only inherits it), but it is refused there too, as systemd does.
struct ModeCall {
  const char* name;
  unsigned int mode_arg;
};
constexpr ModeCall kModeCalls[] = {
    {"chmod", 1}, {"fchmod", 1}, {"fchmodat", 2}, {"fchmodat2", 2}, {"creat", 1},
    {"mkdir", 1}, {"mkdirat", 2}, {"mknod", 1}, {"mknodat", 2},
};

// The calls that take a mode only with a flag that creates a file: O_CREAT,
// or O_TMPFILE (an unnamed file, which linkat can name afterwards; systemd
// leaves it out). openat2 takes both in memory, out of the filter's reach:
// it fails with ENOSYS, as on a kernel before 5.6, so that callers fall
// back to openat (glibc 2.36 and our services never call it).
struct FlaggedModeCall {
  const char* name;
  unsigned int flags_arg;
  unsigned int mode_arg;
};
constexpr FlaggedModeCall kFlaggedModeCalls[] = {{"open", 1, 2}, {"openat", 2, 3}};
// glibc's O_TMPFILE includes O_DIRECTORY; the kernel's own bit is the rest,
// and any flags with it either make an unnamed file or fail with EINVAL.
constexpr uint64_t kCreatingFlags[] = {O_CREAT, O_TMPFILE & ~O_DIRECTORY};

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

absl::Status Check(int rc, absl::string_view what) {
  // libseccomp returns -errno.
  if (rc < 0) return ErrnoStatus(-rc, absl::StrCat("libseccomp: ", what));
  return absl::OkStatus();
}

// Denies `call` for every family not in `allowed`. One comparison a rule
// (libseccomp 2.5 takes no two on one argument): "below the lowest allowed"
// and "above the highest" are one rule each, each family in a gap between
// two allowed ones a rule of its own. A shorter filter is a faster launch:
// the kernel JIT-compiles it for every service.
absl::Status DenyFamilies(void* ctx, const char* call, absl::Span<const int> allowed) {
  CB_ASSIGN_OR_RETURN(int nr, ResolveSyscall(call));
  const uint32_t action = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  std::vector<scmp_datum_t> sorted(allowed.begin(), allowed.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  auto add = [&](scmp_arg_cmp cmp) {
    return Check(seccomp_rule_add(ctx, action, nr, 1, cmp),
                 absl::StrCat(call, "(family ", cmp.op, " ", cmp.datum_a, ")"));
  };
  if (sorted.empty()) return add(SCMP_A0(SCMP_CMP_GE, 0));
  // The comparisons are on all 64 bits, while the kernel reads an int: a
  // value with high bits set is above the highest allowed, and refused.
  if (sorted.front() > 0) CB_RETURN_IF_ERROR(add(SCMP_A0(SCMP_CMP_LT, sorted.front())));
  for (size_t i = 0; i + 1 < sorted.size(); ++i) {
    for (scmp_datum_t family = sorted[i] + 1; family < sorted[i + 1]; ++family) {
      CB_RETURN_IF_ERROR(add(SCMP_A0(SCMP_CMP_EQ, family)));
    }
  }
  return add(SCMP_A0(SCMP_CMP_GT, sorted.back()));
}

// EPERM for every call in kModeCalls and kFlaggedModeCalls whose mode has a
// bit of kSetIdBits: one rule a bit (libseccomp compares an argument once a
// rule, so "either bit" is two), and for the flagged calls one a flag too.
absl::Status DenySetIdModes(void* ctx) {
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const ModeCall& call : kModeCalls) {
    CB_ASSIGN_OR_RETURN(int nr, ResolveSyscall(call.name));
    for (uint64_t bit : kSetIdBits) {
      scmp_arg_cmp mode{call.mode_arg, SCMP_CMP_MASKED_EQ, bit, bit};
      CB_RETURN_IF_ERROR(Check(seccomp_rule_add(ctx, eperm, nr, 1, mode),
                               absl::StrCat(call.name, "(mode & 0x", absl::Hex(bit), ")")));
    }
  }
  for (const FlaggedModeCall& call : kFlaggedModeCalls) {
    CB_ASSIGN_OR_RETURN(int nr, ResolveSyscall(call.name));
    for (uint64_t flag : kCreatingFlags) {
      for (uint64_t bit : kSetIdBits) {
        scmp_arg_cmp flags{call.flags_arg, SCMP_CMP_MASKED_EQ, flag, flag};
        scmp_arg_cmp mode{call.mode_arg, SCMP_CMP_MASKED_EQ, bit, bit};
        CB_RETURN_IF_ERROR(Check(seccomp_rule_add(ctx, eperm, nr, 2, flags, mode),
                                 absl::StrCat(call.name, "(flags & 0x", absl::Hex(flag),
                                              ", mode & 0x", absl::Hex(bit), ")")));
      }
    }
  }
  CB_ASSIGN_OR_RETURN(int openat2_nr, ResolveSyscall("openat2"));
  return Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), openat2_nr, 0), "openat2");
}

absl::StatusOr<std::vector<sock_filter>> Export(void* ctx) {
  // libseccomp 2.5 exports only to an fd.
  CB_ASSIGN_OR_RETURN(UniqueFd memfd,
                      TakeFd(memfd_create("capbroker-seccomp", MFD_CLOEXEC),
                             "memfd_create(capbroker-seccomp)"));
  CB_RETURN_IF_ERROR(Check(seccomp_export_bpf(ctx, memfd.get()), "seccomp_export_bpf"));
  struct stat st;
  if (fstat(memfd.get(), &st) != 0) return ErrnoStatus(errno, "fstat(seccomp memfd)");
  if (st.st_size <= 0 || st.st_size % sizeof(sock_filter) != 0 ||
      st.st_size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return absl::InternalError(absl::StrCat("seccomp filter of ", st.st_size, " bytes"));
  }
  std::vector<sock_filter> instructions(st.st_size / sizeof(sock_filter));
  ssize_t n = RetryEintr(
      [&] { return pread(memfd.get(), instructions.data(), st.st_size, 0); });
  if (n != st.st_size) return ErrnoStatus(n < 0 ? errno : EIO, "pread(seccomp memfd)");
  return instructions;
}

}  // namespace

absl::StatusOr<int> ResolveSyscall(const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) {
    return absl::InternalError(absl::StrCat("libseccomp does not know system call ", name));
  }
  // libseccomp's placeholder (__PNR_*) for a call of another architecture:
  // seccomp_rule_add takes it and emits no rule at all.
  if (nr < 0) {
    return absl::InternalError(absl::StrCat(
        "system call ", name, " does not exist on this architecture (libseccomp gives ", nr,
        "): a rule for it would be dropped without a word"));
  }
  return nr;
}

absl::StatusOr<SeccompProgram> BuildSeccompFilter(
    absl::Span<const int> allowed_socket_families) {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  void* c = ctx.get();
  CB_RETURN_IF_ERROR(Check(
      seccomp_attr_set(c, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
      "seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH)"));
  // A binary tree of system call numbers instead of a linear chain: at
  // install time the kernel runs the filter once per system call number (to
  // cache the ones it always allows) with interrupts off, and every call the
  // service makes runs it again.
  CB_RETURN_IF_ERROR(Check(seccomp_attr_set(c, SCMP_FLTATR_CTL_OPTIMIZE, 2),
                           "seccomp_attr_set(SCMP_FLTATR_CTL_OPTIMIZE, 2)"));
  // Installed by InstallSeccompFilter, which leaves no_new_privs to the
  // caller (the child sets it as a protection of its own).
  CB_RETURN_IF_ERROR(Check(seccomp_attr_set(c, SCMP_FLTATR_CTL_NNP, 0),
                           "seccomp_attr_set(SCMP_FLTATR_CTL_NNP)"));

  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDeniedSyscalls) {
    CB_ASSIGN_OR_RETURN(int nr, ResolveSyscall(name));
    CB_RETURN_IF_ERROR(Check(seccomp_rule_add(c, eperm, nr, 0), name));
  }
  CB_ASSIGN_OR_RETURN(int clone_nr, ResolveSyscall("clone"));
  for (uint64_t flag : kCloneNamespaceFlags) {
    CB_RETURN_IF_ERROR(Check(
        seccomp_rule_add(c, eperm, clone_nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
        "clone(CLONE_NEW*)"));
  }
  CB_ASSIGN_OR_RETURN(int clone3_nr, ResolveSyscall("clone3"));
  CB_RETURN_IF_ERROR(Check(seccomp_rule_add(c, SCMP_ACT_ERRNO(ENOSYS), clone3_nr, 0), "clone3"));

  CB_ASSIGN_OR_RETURN(int personality_nr, ResolveSyscall("personality"));
  CB_RETURN_IF_ERROR(Check(
      seccomp_rule_add(c, eperm, personality_nr, 1,
                       SCMP_A0(SCMP_CMP_NE, kPersonalityDefault)),
      "personality"));

  // The option is an int to the kernel: compare its low 32 bits only. The
  // signal is an unsigned long, compared whole (the kernel refuses one with
  // high bits set anyway).
  CB_ASSIGN_OR_RETURN(int prctl_nr, ResolveSyscall("prctl"));
  CB_RETURN_IF_ERROR(Check(
      seccomp_rule_add(c, eperm, prctl_nr, 2,
                       SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, PR_SET_PDEATHSIG),
                       SCMP_A1(SCMP_CMP_NE, kParentDeathSignal)),
      "prctl(PR_SET_PDEATHSIG)"));

  // The request number is an unsigned int to the kernel: compare the low 32
  // bits only, or a caller could set high bits to slip past.
  CB_ASSIGN_OR_RETURN(int ioctl_nr, ResolveSyscall("ioctl"));
  for (uint64_t request : {uint64_t{TIOCSTI}, uint64_t{TIOCLINUX}}) {
    CB_RETURN_IF_ERROR(Check(
        seccomp_rule_add(c, eperm, ioctl_nr, 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, request)),
        "ioctl(TIOCSTI/TIOCLINUX)"));
  }

  CB_RETURN_IF_ERROR(DenySetIdModes(c));

  CB_RETURN_IF_ERROR(DenyFamilies(c, "socket", allowed_socket_families));
  CB_RETURN_IF_ERROR(DenyFamilies(c, "socketpair", allowed_socket_families));

  CB_ASSIGN_OR_RETURN(int newest_nr, ResolveSyscall(kNewestReviewedSyscall));
  std::vector<sock_filter> instructions =
      SyscallCeiling(seccomp_arch_native(), static_cast<uint32_t>(newest_nr));
  CB_ASSIGN_OR_RETURN(std::vector<sock_filter> rules, Export(c));
  instructions.insert(instructions.end(), rules.begin(), rules.end());
  if (instructions.size() > BPF_MAXINSNS) {
    return absl::InternalError(
        absl::StrCat("seccomp filter of ", instructions.size(), " instructions"));
  }
  return SeccompProgram(std::move(instructions));
}

absl::Status InstallSeccompFilter(const SeccompProgram& program) {
  sock_fprog prog;
  prog.len = static_cast<unsigned short>(program.instructions().size());
  prog.filter = const_cast<sock_filter*>(program.instructions().data());
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return ErrnoStatus(errno, "seccomp(SECCOMP_SET_MODE_FILTER)");
  }
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox

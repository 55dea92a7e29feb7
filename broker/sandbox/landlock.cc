#include "broker/sandbox/landlock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox::landlock {
namespace {

// struct landlock_ruleset_attr as of ABI 6 (the kernel takes a prefix of it
// from older callers: pass the size the ABI knows).
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};

// struct landlock_path_beneath_attr (packed in the kernel's UAPI).
struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};

constexpr uint32_t kCreateRulesetVersion = 1U << 0;
constexpr int kRulePathBeneath = 1;
constexpr uint64_t kNetBindTcp = 1ULL << 0;
constexpr uint64_t kNetConnectTcp = 1ULL << 1;
constexpr uint64_t kScopeAbstractUnixSocket = 1ULL << 0;
constexpr uint64_t kScopeSignal = 1ULL << 1;

}  // namespace

absl::StatusOr<int> Abi() {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  if (abi >= 1) return static_cast<int>(abi);
  if (errno == ENOSYS) return absl::UnavailableError("not supported by this kernel");
  if (errno == EOPNOTSUPP) return absl::UnavailableError("disabled at boot (not in lsm=)");
  return ErrnoStatus(errno, "landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION)");
}

uint64_t HandledFsRights(int abi) {
  uint64_t rights = (kMakeSym << 1) - 1;  // ABI 1: bits 0 to 12
  if (abi >= 2) rights |= kRefer;
  if (abi >= 3) rights |= kTruncate;
  if (abi >= 5) rights |= kIoctlDev;
  return rights;
}

std::vector<std::string> UncoveredAt(int abi, bool tcp_wanted, bool host_tree) {
  std::vector<std::string> gaps;
  if (abi < 3 && host_tree) {
    gaps.push_back(absl::StrCat("ABI ", abi,
                                " does not control truncate(2) (ABI 3): without the minimal root "
                                "(protectSystem), the service may empty any file its uid may "
                                "write"));
  }
  if (abi < 4 && tcp_wanted) {
    gaps.push_back(absl::StrCat("ABI ", abi,
                                " has no TCP rules (ABI 4): the service may bind and connect "
                                "TCP sockets in its network namespace"));
  }
  if (abi < 6) {
    gaps.push_back(absl::StrCat("ABI ", abi,
                                " does not scope abstract unix sockets and signals (ABI 6): only "
                                "the network namespace keeps the sockets in, and the pid "
                                "namespace the signals"));
  }
  return gaps;
}

absl::StatusOr<Ruleset> Ruleset::Create(int abi, bool deny_tcp) {
  RulesetAttr attr = {};
  attr.handled_access_fs = HandledFsRights(abi);
  size_t size = sizeof(attr.handled_access_fs);
  if (abi >= 4) {
    size = offsetof(RulesetAttr, scoped);
    if (deny_tcp) attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
  }
  if (abi >= 6) {
    size = sizeof(attr);
    attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  }
  CB_ASSIGN_OR_RETURN(
      UniqueFd fd,
      TakeFd(static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, size, 0)),
             absl::StrCat("landlock_create_ruleset(abi=", abi, ")")));
  return Ruleset(std::move(fd), abi);
}

absl::Status Ruleset::AllowPath(const char* path, uint64_t rights) {
  CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(open(path, O_PATH | O_CLOEXEC),
                                          absl::StrCat("open(", path, ", O_PATH)")));
  absl::Status status = AllowFd(fd.get(), rights);
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return absl::OkStatus();
}

absl::Status Ruleset::AllowFd(int fd, uint64_t rights) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(fd=", fd, ")"));
  rights &= HandledFsRights(abi_);
  // The kernel refuses directory rights on a file rule (EINVAL).
  if (!S_ISDIR(st.st_mode)) rights &= kFileRights;
  if (rights == 0) return absl::OkStatus();
  PathBeneathAttr attr = {rights, fd};
  if (syscall(SYS_landlock_add_rule, fd_.get(), kRulePathBeneath, &attr, 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("landlock_add_rule(fd=", fd, ", 0x",
                                           absl::Hex(rights), ")"));
  }
  return absl::OkStatus();
}

absl::Status Ruleset::RestrictSelf() {
  if (syscall(SYS_landlock_restrict_self, fd_.get(), 0) != 0) {
    return ErrnoStatus(errno, "landlock_restrict_self");
  }
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox::landlock

// Landlock (raw system calls): what the service may do with files beneath
// the paths it is allowed, with TCP ports, and across its domain's border.
//
// Debian 12's <linux/landlock.h> stops at ABI 3, and the kernel here speaks
// ABI 7, so the structures and constants are declared here. A ruleset
// handles every right the running kernel's ABI knows: a right that is
// handled and not granted by a rule is denied.
//   ABI 1: filesystem rights; 2: REFER (rename/link across directories);
//   3: TRUNCATE; 4: TCP bind and connect; 5: IOCTL_DEV; 6: scoping of
//   abstract unix sockets and signals; 7: audit flags (unused here).
// Landlock does not restrict what the process can reach through fds it holds
// already, nor connect(2) to a pathname unix socket (that is ABI 9).
#ifndef CAPBROKER_BROKER_SANDBOX_LANDLOCK_H_
#define CAPBROKER_BROKER_SANDBOX_LANDLOCK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox::landlock {

// Filesystem rights (LANDLOCK_ACCESS_FS_*).
inline constexpr uint64_t kExecute = 1ULL << 0;
inline constexpr uint64_t kWriteFile = 1ULL << 1;
inline constexpr uint64_t kReadFile = 1ULL << 2;
inline constexpr uint64_t kReadDir = 1ULL << 3;
inline constexpr uint64_t kRemoveDir = 1ULL << 4;
inline constexpr uint64_t kRemoveFile = 1ULL << 5;
inline constexpr uint64_t kMakeChar = 1ULL << 6;
inline constexpr uint64_t kMakeDir = 1ULL << 7;
inline constexpr uint64_t kMakeReg = 1ULL << 8;
inline constexpr uint64_t kMakeSock = 1ULL << 9;
inline constexpr uint64_t kMakeFifo = 1ULL << 10;
inline constexpr uint64_t kMakeBlock = 1ULL << 11;
inline constexpr uint64_t kMakeSym = 1ULL << 12;
inline constexpr uint64_t kRefer = 1ULL << 13;     // ABI 2
inline constexpr uint64_t kTruncate = 1ULL << 14;  // ABI 3
inline constexpr uint64_t kIoctlDev = 1ULL << 15;  // ABI 5

// Rights that apply to a file (not only to a directory's entries).
inline constexpr uint64_t kFileRights =
    kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;

// The sets the sandbox grants.
inline constexpr uint64_t kRead = kReadFile | kReadDir;
inline constexpr uint64_t kReadExecute = kRead | kExecute;
// Read and write, create, remove and rename; no devices, no execution.
inline constexpr uint64_t kReadWrite =
    kRead | kWriteFile | kTruncate | kRemoveDir | kRemoveFile | kMakeDir |
    kMakeReg | kMakeSock | kMakeFifo | kMakeSym | kRefer;

// The ABI of the running kernel (LANDLOCK_CREATE_RULESET_VERSION), or
// kUnavailable: "not supported by this kernel" (ENOSYS) or "disabled at
// boot" (EOPNOTSUPP: not in the lsm= list).
absl::StatusOr<int> Abi();

// Every filesystem right `abi` knows.
uint64_t HandledFsRights(int abi);

// What the sandbox's ruleset leaves uncovered at `abi` that a newer ABI
// covers, one reason a gap (for LaunchedProcess::missing): no scoping of
// abstract unix sockets and signals below ABI 6; no TCP bind and connect
// rules below ABI 4, when `tcp_wanted` (the ruleset is the only layer to
// deny TCP: the service's address families have neither inet nor inet6,
// and the seccomp filter, which would refuse the sockets, is off or
// missing); no control of truncate(2) below ABI 3, when `host_tree` (the
// service sees the host's files: without the minimal root, whose read-only
// mounts refuse it, truncate(2) empties any file its uid may write). Empty
// at ABI 6 and above.
std::vector<std::string> UncoveredAt(int abi, bool tcp_wanted, bool host_tree);

class Ruleset {
 public:
  // A ruleset handling every filesystem right of `abi`; with `deny_tcp`
  // (ABI 4+) also TCP bind and connect, with no port allowed; with ABI 6+,
  // scoped: no connecting to abstract unix sockets and no signals outside
  // the domain.
  static absl::StatusOr<Ruleset> Create(int abi, bool deny_tcp);

  // Grants `rights` (filtered to what the ABI handles) beneath `path`, or on
  // it when it is not a directory (then only kFileRights apply).
  absl::Status AllowPath(const char* path, uint64_t rights);

  // The same beneath the directory or file `fd` (borrowed).
  absl::Status AllowFd(int fd, uint64_t rights);

  // landlock_restrict_self: the calling thread, and everything it executes,
  // is confined from now on. Needs no_new_privs (or CAP_SYS_ADMIN).
  absl::Status RestrictSelf();

  int abi() const { return abi_; }

 private:
  Ruleset(UniqueFd fd, int abi) : fd_(std::move(fd)), abi_(abi) {}

  UniqueFd fd_;
  int abi_;
};

}  // namespace capbroker::sandbox::landlock

#endif  // CAPBROKER_BROKER_SANDBOX_LANDLOCK_H_

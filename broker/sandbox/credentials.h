// Giving up privileges in the service's process before execve.
//
// Order matters, and the functions are listed in the order the child calls
// them: the bounding set can only be dropped while the process still has
// CAP_SETPCAP (before setresuid to a non-zero uid), and the parent death
// signal must be set again after the ids change, because the kernel clears
// it on every credential change.
#ifndef CAPBROKER_BROKER_SANDBOX_CREDENTIALS_H_
#define CAPBROKER_BROKER_SANDBOX_CREDENTIALS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace capbroker::sandbox {

// Leaves the broker's session keyring for a new, empty, anonymous one
// (keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL); systemd's KeyringMode=private).
// A child inherits its parent's session keyring and possesses every key in
// it: without this a service (with systemCallFilter off, which denies
// keyctl) could search @s and read the broker's keys. Called before the ids
// change, so that the keyring is charged to the broker's key quota, not to
// the service's uid (shared by many services: 65534); the service still
// possesses it. A kernel without keyrings (ENOSYS) has nothing to leak: ok.
absl::Status JoinNewSessionKeyring();

// setfsuid and setfsgid to `uid` and `gid`, keeping every capability. In a
// new user namespace that maps only the service's ids, a broker running as
// root leaves the child with ids the namespace does not map, and the kernel
// refuses to create files for an unmapped owner (EOVERFLOW), even in a tmpfs
// of the namespace's own: the minimal root is built with the service's fs
// ids. Capabilities survive because the child's uid is not 0 of the
// namespace (the kernel's fsuid fix-up only drops them when fsuid leaves 0).
absl::Status SwitchFsIds(uid_t uid, gid_t gid);

// PR_CAPBSET_DROP for every capability the running kernel knows (which may be
// more than this build's headers know). Needs CAP_SETPCAP.
absl::Status DropBoundingSet();

// setgroups(0, NULL) when `clear_groups` (not allowed in a user namespace
// whose setgroups file says "deny"), then setresgid and setresuid to `gid`
// and `uid`. A change to a non-zero uid clears every capability.
absl::Status SwitchIds(uid_t uid, gid_t gid, bool clear_groups);

// The caller's supplementary groups (getgroups(2)).
absl::StatusOr<std::vector<gid_t>> SupplementaryGroups();

// Why a broker cannot drop its supplementary groups for its services.
enum class GroupsKept {
  kNotRoot,          // only root may call setgroups
  kSetgroupsDenied,  // root, but its user namespace's setgroups file says "deny"
};

// For a service that keeps the broker's supplementary groups (SwitchIds
// without `clear_groups`): an entry of LaunchedProcess::missing naming
// `groups` but `gid` (the service's own), which still open to the service
// every file those groups may read or write, although `id` in the service
// shows them as the overflow group, and saying why (`cause`) and what to
// do about it; "" when no other group is kept.
std::string KeptGroupsEntry(absl::Span<const gid_t> groups, gid_t gid, GroupsKept cause);

// Clears the ambient set, then the effective, permitted and inheritable sets
// with capset(2): needed when the service runs as uid 0 of its namespace,
// harmless otherwise.
absl::Status ClearCapabilities();

// PR_SET_NO_NEW_PRIVS: execve can never grant privileges again (setuid
// bits, file capabilities), and seccomp and Landlock may be installed
// without CAP_SYS_ADMIN.
absl::Status SetNoNewPrivileges();

// PR_SET_PDEATHSIG(SIGKILL): the process is killed when the thread that
// created it exits. The seccomp filter keeps the service from clearing or
// changing it (seccomp_filter.h).
absl::Status SetParentDeathSignal();

// Whether the parent still holds its end of the sync pipe (`sync_fd`, the
// child's read end, borrowed): PR_SET_PDEATHSIG only covers a parent that
// dies after it is set, and getppid() says 0 in a new pid namespace.
// kAborted when the parent is gone.
absl::Status CheckParentAlive(int sync_fd);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_CREDENTIALS_H_

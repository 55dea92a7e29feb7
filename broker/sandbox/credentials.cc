#include "broker/sandbox/credentials.h"

#include <grp.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <poll.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {

absl::Status DropBoundingSet() {
  // The kernel's last capability is in /proc/sys/kernel/cap_last_cap, but
  // /proc may not be mounted; PR_CAPBSET_DROP says EINVAL past the last one.
  for (int cap = 0; cap < 64; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL && cap > 0) return absl::OkStatus();
      return ErrnoStatus(errno, absl::StrCat("prctl(PR_CAPBSET_DROP, ", cap, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status JoinNewSessionKeyring() {
  // Raw syscall: libkeyutils is not a dependency. NULL: a new anonymous
  // keyring, never one found by name (a named one could be a keyring
  // another process of the same uid already joined).
  // Returns the new keyring's serial number.
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, nullptr) >= 0) return absl::OkStatus();
  const int join_error = errno;
  // No keyrings in this kernel: nothing to leave.
  if (join_error == ENOSYS) return absl::OkStatus();
  // A filter around the broker (Docker's default profile) refuses keyctl:
  // the service inherits that filter, and so reaches no keyring either, if
  // asking for the session keyring's id is refused too.
  if ((join_error == EPERM || join_error == EACCES) &&
      syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) < 0 &&
      (errno == EPERM || errno == EACCES || errno == ENOSYS)) {
    return absl::OkStatus();
  }
  return ErrnoStatus(join_error, "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): the service would "
                                 "share the broker's session keyring");
}

absl::StatusOr<std::vector<gid_t>> SupplementaryGroups() {
  // The count may change between the calls only if another thread changes
  // the groups: the broker does not.
  int count = getgroups(0, nullptr);
  if (count < 0) return ErrnoStatus(errno, "getgroups(0)");
  std::vector<gid_t> groups(static_cast<size_t>(count));
  count = getgroups(count, groups.data());
  if (count < 0) return ErrnoStatus(errno, "getgroups");
  groups.resize(static_cast<size_t>(count));
  return groups;
}

std::string KeptGroupsEntry(absl::Span<const gid_t> groups, gid_t gid, GroupsKept cause) {
  std::vector<gid_t> kept;
  for (gid_t group : groups) {
    if (group != gid && std::find(kept.begin(), kept.end(), group) == kept.end()) {
      kept.push_back(group);
    }
  }
  if (kept.empty()) return "";
  absl::string_view why_and_remedy;
  switch (cause) {
    case GroupsKept::kNotRoot:
      why_and_remedy =
          "a broker that is not root cannot drop them; in a user namespace they show as the "
          "overflow group): run the broker as a user without supplementary groups";
      break;
    case GroupsKept::kSetgroupsDenied:
      why_and_remedy =
          "the broker's user namespace denies setgroups (/proc/self/setgroups says deny), so "
          "even a root broker cannot drop them; in a user namespace they show as the overflow "
          "group): start the broker without supplementary groups, or in a user namespace that "
          "allows setgroups";
      break;
  }
  return absl::StrCat("supplementary groups: the service keeps the broker's group",
                      kept.size() > 1 ? "s " : " ", absl::StrJoin(kept, " "),
                      ", and every file they may read or write (", why_and_remedy);
}

absl::Status SwitchFsIds(uid_t uid, gid_t gid) {
  // Neither call reports an error; asking again (-1 changes nothing) does.
  setfsgid(gid);
  if (setfsgid(-1) != static_cast<int>(gid)) return absl::PermissionDeniedError(absl::StrCat("setfsgid(", gid, ") failed"));
  setfsuid(uid);
  if (setfsuid(-1) != static_cast<int>(uid)) return absl::PermissionDeniedError(absl::StrCat("setfsuid(", uid, ") failed"));
  return absl::OkStatus();
}

absl::Status SwitchIds(uid_t uid, gid_t gid, bool clear_groups) {
  if (clear_groups && setgroups(0, nullptr) != 0) {
    return ErrnoStatus(errno, "setgroups(0)");
  }
  if (setresgid(gid, gid, gid) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setresgid(", gid, ")"));
  }
  if (setresuid(uid, uid, uid) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setresuid(", uid, ")"));
  }
  return absl::OkStatus();
}

absl::Status ClearCapabilities() {
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return ErrnoStatus(errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) {
    return ErrnoStatus(errno, "capset(0)");
  }
  return absl::OkStatus();
}

absl::Status SetNoNewPrivileges() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return ErrnoStatus(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  return absl::OkStatus();
}

absl::Status SetParentDeathSignal() {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    return ErrnoStatus(errno, "prctl(PR_SET_PDEATHSIG, SIGKILL)");
  }
  return absl::OkStatus();
}

absl::Status CheckParentAlive(int sync_fd) {
  pollfd pfd{sync_fd, POLLIN, 0};
  int ready = RetryEintr([&] { return poll(&pfd, 1, 0); });
  if (ready < 0) return ErrnoStatus(errno, "poll(sync pipe)");
  // The parent writes one byte, which the child has read, and keeps the
  // write end open until execve: anything readable now is end of file.
  if (ready > 0) return absl::AbortedError("the broker exited during the launch");
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox

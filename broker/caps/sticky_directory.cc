#include "broker/caps/sticky_directory.h"

#include "absl/strings/str_format.h"

namespace capbroker::caps {

absl::Status CheckStickyDirectoryOwner(const struct stat& directory, const struct stat& entry,
                                       uid_t broker_euid, absl::string_view what) {
  // The kernel's may_create_in_sticky, at fs.protected_regular=2: group- or
  // world-writable counts.
  const bool open_to_others = (directory.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  if (!(directory.st_mode & S_ISVTX) || !open_to_others || entry.st_uid == broker_euid ||
      entry.st_uid == directory.st_uid) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "%s: is owned by uid %u, in a sticky directory that %s may write to (mode %04o, owned by "
      "uid %u): anyone who may write there could have put it there, so the broker goes "
      "through an entry there (a file, a directory on the way, a symlink) only if it is the "
      "broker's own (uid %u) or the directory owner's (as the kernel's fs.protected_regular "
      "and fs.protected_symlinks do). Have it owned by uid %u (chown), or keep it in a "
      "directory that only its owner may write to",
      what, entry.st_uid, (directory.st_mode & S_IWOTH) ? "everyone" : "its group",
      directory.st_mode & 07777, directory.st_uid, broker_euid, broker_euid));
}

}  // namespace capbroker::caps

#include "broker/policy/script_exes.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {

absl::StatusOr<bool> ExeIsScript(const std::string& path, MountTableReader read_mounts) {
  // O_PATH opens nothing: a FIFO cannot block, a device's open cannot act.
  // RESOLVE_CACHED: the lookup asks no file system, only the kernel's
  // caches (EAGAIN otherwise), so that a name on a FUSE mount that landed
  // after the table was read cannot hold the broker.
  CB_ASSIGN_OR_RETURN(UniqueFd handle,
                      Openat2(AT_FDCWD, path, O_PATH, 0,
                              RESOLVE_CACHED | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS));
  // Where the file is, by the mount the fd is on, not by its path: fstatfs
  // would tell the type too, but FUSE asks its server for it.
  CB_ASSIGN_OR_RETURN(int mount_id, util::MountIdOf(handle.get()));
  // The ID is looked up in a table read now, not in one read before the
  // open: the kernel reuses a freed mount's ID, so a local mount listed
  // then may have been unmounted since and its ID given to a FUSE mount the
  // file was found on. `handle` pins its mount: while it is held, the ID
  // names that mount and no other, in the table read now as in any later.
  absl::StatusOr<util::MountTable> mounts = read_mounts();
  if (!mounts.ok()) {
    return absl::Status(mounts.status().code(),
                        absl::StrCat("cannot tell which file system holds ", path, ": ",
                                     mounts.status().message()));
  }
  const util::Mount* mount = mounts->FindId(mount_id);
  if (mount == nullptr) {
    // Detached since (umount -l), or a table not of this mount namespace.
    return absl::UnavailableError(absl::StrCat(path, " is on mount ", mount_id,
                                               ", which the mount table does not list"));
  }
  if (std::optional<std::string> kind = util::RemoteFileSystemKind(mount->type)) {
    return absl::UnavailableError(absl::StrCat(path, " is on a ", *kind, " file system"));
  }
  struct stat st;
  if (fstat(handle.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
  if (!S_ISREG(st.st_mode)) return false;
  // The very inode checked. O_NONBLOCK: a lease on the file (fcntl
  // F_SETLEASE) fails the open at once instead of holding it.
  CB_ASSIGN_OR_RETURN(UniqueFd file,
                      Reopen(handle.get(), O_RDONLY | O_NONBLOCK | O_NOCTTY,
                             absl::StrCat("open ", path)));
  char start[2];
  const ssize_t n = RetryEintr([&] { return pread(file.get(), start, sizeof(start), 0); });
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("read ", path));
  return n == 2 && start[0] == '#' && start[1] == '!';
}

std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts,
                                        MountTableReader read_mounts) {
  std::vector<std::string> notes;
  for (const PrincipalSpec& principal : policy.principals()) {
    if (principal.exe.empty() || principal.exe.front() != '/') continue;
    // A file system that may not answer is not asked (see the header). By
    // the name first, in the table read before: no open, no fresh table.
    const util::Mount* mount = mounts.Find(principal.exe);
    if (mount == nullptr || util::RemoteFileSystemKind(mount->type).has_value()) continue;
    absl::StatusOr<bool> script = ExeIsScript(principal.exe, read_mounts);
    if (!script.ok() || !*script) continue;
    notes.push_back(absl::StrCat(
        "principal '", principal.name, "': exe ", principal.exe,
        " is a script (its file starts with #!): the kernel runs its interpreter and reports "
        "that as the client's executable, never the script, so this rule will never match"));
  }
  return notes;
}

}  // namespace capbroker

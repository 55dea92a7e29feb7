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

absl::StatusOr<bool> ExeIsScript(const std::string& path, const util::MountTable& mounts) {
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
  const util::Mount* mount = mounts.FindId(mount_id);
  if (mount == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(path, " is on a mount made after the mount table was read"));
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

std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts) {
  std::vector<std::string> notes;
  for (const PrincipalSpec& principal : policy.principals()) {
    if (principal.exe.empty() || principal.exe.front() != '/') continue;
    // A file system that may not answer is not asked (see the header).
    const util::Mount* mount = mounts.Find(principal.exe);
    if (mount == nullptr || util::RemoteFileSystemKind(mount->type).has_value()) continue;
    absl::StatusOr<bool> script = ExeIsScript(principal.exe, mounts);
    if (!script.ok() || !*script) continue;
    notes.push_back(absl::StrCat(
        "principal '", principal.name, "': exe ", principal.exe,
        " is a script (its file starts with #!): the kernel runs its interpreter and reports "
        "that as the client's executable, never the script, so this rule will never match"));
  }
  return notes;
}

}  // namespace capbroker

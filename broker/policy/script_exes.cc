#include "broker/policy/script_exes.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {

namespace {

// An `exe` file found from the kernel's caches alone, held until the mount
// table has been read (see the header).
struct OpenedExe {
  UniqueFd handle;  // O_PATH: pins the mount the file was found on
  int mount_id = -1;
};

absl::StatusOr<OpenedExe> OpenExe(const std::string& path) {
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
  return OpenedExe{std::move(handle), mount_id};
}

// Whether the opened `exe` (at `path`) is a script, its mount looked up in
// `mounts`, a table read while `exe.handle` was open (or why it was not).
absl::StatusOr<bool> IsScript(const std::string& path, const OpenedExe& exe,
                              const absl::StatusOr<util::MountTable>& mounts) {
  if (!mounts.ok()) {
    return absl::Status(mounts.status().code(),
                        absl::StrCat("cannot tell which file system holds ", path, ": ",
                                     mounts.status().message()));
  }
  const util::Mount* mount = mounts->FindId(exe.mount_id);
  if (mount == nullptr) {
    // Detached since (umount -l), or a table not of this mount namespace.
    return absl::UnavailableError(absl::StrCat(path, " is on mount ", exe.mount_id,
                                               ", which the mount table does not list"));
  }
  if (std::optional<std::string> kind = util::RemoteFileSystemKind(mount->type)) {
    return absl::UnavailableError(absl::StrCat(path, " is on a ", *kind, " file system"));
  }
  struct stat st;
  if (fstat(exe.handle.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
  // A file nobody may execute runs as no process (execve needs an execute
  // bit, root's too), so it is no script a rule could mean; nor is it read,
  // which keeps the read off pseudo-files, where a read may act
  // (/proc/kmsg's takes the kernel's log).
  if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) return false;
  // The very inode checked. O_NONBLOCK: a lease on the file (fcntl
  // F_SETLEASE) fails the open at once instead of holding it.
  CB_ASSIGN_OR_RETURN(UniqueFd file,
                      Reopen(exe.handle.get(), O_RDONLY | O_NONBLOCK | O_NOCTTY,
                             absl::StrCat("open ", path)));
  char start[2];
  const ssize_t n = RetryEintr([&] { return pread(file.get(), start, sizeof(start), 0); });
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("read ", path));
  return n == 2 && start[0] == '#' && start[1] == '!';
}

}  // namespace

std::vector<absl::StatusOr<bool>> ExesAreScripts(absl::Span<const std::string> paths,
                                                 MountTableReader read_mounts) {
  std::vector<absl::StatusOr<bool>> results;
  results.reserve(paths.size());
  // One batch: up to kExeBatch files open at once, then one table read for
  // all of them. The table is read only after the opens (a freed mount's
  // ID is reused: see the header); each held fd pins its mount, so the
  // IDs in that one table name the mounts the files were found on.
  std::vector<absl::StatusOr<OpenedExe>> batch;
  batch.reserve(std::min(paths.size(), kExeBatch));
  for (size_t first = 0; first < paths.size(); first += batch.size()) {
    batch.clear();
    bool any_open = false;
    for (size_t i = first; i < paths.size() && batch.size() < kExeBatch; ++i) {
      batch.push_back(OpenExe(paths[i]));
      any_open = any_open || batch.back().ok();
    }
    // Nothing opened, nothing to look up: no table read.
    absl::StatusOr<util::MountTable> mounts =
        any_open ? read_mounts() : absl::StatusOr<util::MountTable>(util::MountTable());
    for (size_t i = 0; i < batch.size(); ++i) {
      results.push_back(batch[i].ok() ? IsScript(paths[first + i], *batch[i], mounts)
                                      : absl::StatusOr<bool>(batch[i].status()));
    }
  }
  return results;
}

absl::StatusOr<bool> ExeIsScript(const std::string& path, MountTableReader read_mounts) {
  return std::move(ExesAreScripts({path}, read_mounts).front());
}

std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts,
                                        MountTableReader read_mounts) {
  // Each distinct path once, however many principals name it. A file
  // system that may not answer is not asked (see the header): by the name
  // first, in the table read before, which needs no open and no fresh
  // table.
  std::vector<std::string> paths;
  absl::flat_hash_map<std::string, size_t> index;  // into `paths`
  for (const PrincipalSpec& principal : policy.principals()) {
    const std::string& exe = principal.exe;
    if (exe.empty() || exe.front() != '/' || index.contains(exe)) continue;
    const util::Mount* mount = mounts.Find(exe);
    if (mount == nullptr || util::RemoteFileSystemKind(mount->type).has_value()) continue;
    index.emplace(exe, paths.size());
    paths.push_back(exe);
  }
  const std::vector<absl::StatusOr<bool>> scripts = ExesAreScripts(paths, read_mounts);
  std::vector<std::string> notes;
  for (const PrincipalSpec& principal : policy.principals()) {
    const auto it = index.find(principal.exe);
    if (it == index.end()) continue;
    const absl::StatusOr<bool>& script = scripts[it->second];
    if (!script.ok() || !*script) continue;
    notes.push_back(absl::StrCat(
        "principal '", principal.name, "': exe ", principal.exe,
        " is a script (its file starts with #!): the kernel runs its interpreter and reports "
        "that as the client's executable, never the script, so this rule will never match"));
  }
  return notes;
}

}  // namespace capbroker

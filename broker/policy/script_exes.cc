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
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {
namespace {

// Whether the file at the absolute `path` is a regular file whose first two
// bytes are "#!", as the kernel's binfmt_script tests; false for anything
// that cannot be told.
bool IsScript(const std::string& path) {
  // O_PATH opens nothing: a FIFO cannot block, a device's open cannot act.
  absl::StatusOr<UniqueFd> opened =
      Openat2(AT_FDCWD, path, O_PATH, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (!opened.ok()) return false;
  const UniqueFd handle = *std::move(opened);
  struct stat st;
  if (fstat(handle.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  // The very inode checked. O_NONBLOCK: a lease on the file (fcntl
  // F_SETLEASE) fails the open at once instead of holding it.
  const std::string self = absl::StrCat("/proc/self/fd/", handle.get());
  UniqueFd file(RetryEintr(
      [&] { return open(self.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC); }));
  if (!file) return false;
  char start[2];
  const ssize_t n = RetryEintr([&] { return pread(file.get(), start, sizeof(start), 0); });
  return n == 2 && start[0] == '#' && start[1] == '!';
}

}  // namespace

std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts) {
  std::vector<std::string> notes;
  for (const PrincipalSpec& principal : policy.principals()) {
    if (principal.exe.empty() || principal.exe.front() != '/') continue;
    // A file system that may not answer is not asked (see the header).
    const util::Mount* mount = mounts.Find(principal.exe);
    if (mount == nullptr || util::RemoteFileSystemKind(mount->type).has_value()) continue;
    if (!IsScript(principal.exe)) continue;
    notes.push_back(absl::StrCat(
        "principal '", principal.name, "': exe ", principal.exe,
        " is a script (its file starts with #!): the kernel runs its interpreter and reports "
        "that as the client's executable, never the script, so this rule will never match"));
  }
  return notes;
}

}  // namespace capbroker

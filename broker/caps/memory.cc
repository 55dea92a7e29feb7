#include "broker/caps/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::caps {

absl::StatusOr<UniqueFd> CreateSealedMemfd(absl::string_view name,
                                           uint64_t size) {
  std::string label = absl::StrCat("capbroker:", name);
  CB_ASSIGN_OR_RETURN(
      UniqueFd fd,
      TakeFd(memfd_create(label.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING),
             absl::StrCat("memfd_create(", label, ")")));
  // A memfd's inode is created with mode 0777, and anyone holding an fd to
  // it can open it again through /proc/self/fd/N with any access the mode
  // allows: a read-only grant would become read-write. Owner-only, the
  // reopen is refused to every other uid.
  if (fchmod(fd.get(), 0600) != 0) return ErrnoStatus(errno, "fchmod(memfd, 0600)");
  if (RetryEintr([&] { return ftruncate(fd.get(), static_cast<off_t>(size)); }) != 0) {
    return ErrnoStatus(errno, absl::StrCat("ftruncate(memfd, ", size, ")"));
  }
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    return ErrnoStatus(errno, "fcntl(memfd, F_ADD_SEALS)");
  }
  return fd;
}

absl::StatusOr<UniqueFd> ReopenReadOnly(int fd) {
  // A blocking open, unlike open_path's: a file lease that would make it
  // wait (fcntl F_SETLEASE) takes the file's owner, the broker's own uid,
  // or CAP_LEASE, and whoever has either can stop the broker anyway.
  return Reopen(fd, O_RDONLY, absl::StrCat("open(/proc/self/fd/", fd, ", O_RDONLY)"));
}

}  // namespace capbroker::caps

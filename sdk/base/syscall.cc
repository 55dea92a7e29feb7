#include "sdk/base/syscall.h"

#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace capbroker {

absl::Status ErrnoStatus(int errnum, absl::string_view what) {
  return absl::ErrnoToStatus(errnum, absl::StrCat(what));
}

absl::StatusOr<UniqueFd> TakeFd(int fd, absl::string_view what) {
  if (fd < 0) return ErrnoStatus(errno, what);
  return UniqueFd(fd);
}

absl::StatusOr<UniqueFd> Reopen(int fd, int flags, absl::string_view what) {
  std::string self = absl::StrCat("/proc/self/fd/", fd);
  return TakeFd(RetryEintr([&] { return open(self.c_str(), flags | O_CLOEXEC); }), what);
}

absl::StatusOr<std::string> FdPath(int fd) {
  std::string link = absl::StrCat("/proc/self/fd/", fd);
  char path[PATH_MAX];
  ssize_t n = readlink(link.c_str(), path, sizeof(path));
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink(", link, ")"));
  if (static_cast<size_t>(n) >= sizeof(path)) {
    return ErrnoStatus(ENAMETOOLONG, absl::StrCat("readlink(", link, ")"));
  }
  return std::string(path, static_cast<size_t>(n));
}

absl::Status SetNonBlocking(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_GETFL)"));
  int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && fcntl(fd, F_SETFL, wanted) < 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_SETFL)"));
  }
  return absl::OkStatus();
}

absl::Status EnsureStandardFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // open() takes the lowest free number: `fd` itself, since those below
    // are open by now. Not close-on-exec, unlike every other fd: these
    // stand in for the standard streams, which a child inherits.
    int opened = RetryEintr([] { return open("/dev/null", O_RDWR | O_NOCTTY); });
    if (opened < 0) return ErrnoStatus(errno, "open /dev/null for a closed standard fd");
    if (opened != fd) {
      close(opened);
      return absl::InternalError(absl::StrCat("open /dev/null gave fd ", opened,
                                              " for closed standard fd ", fd));
    }
  }
  return absl::OkStatus();
}

}  // namespace capbroker

#include "broker/server/readiness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

absl::StatusOr<ReadyFd> ReadyFd::Claim(int fd) {
  if (fd < kMinReadyFd) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ready-fd ", fd, ": fds 0, 1 and 2 are the standard streams; use ", kMinReadyFd,
        " or above"));
  }
  if (fcntl(fd, F_GETFD) < 0) {
    if (errno == EBADF) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--ready-fd ", fd, ": fd ", fd, " is not open; start capbrokerd with the write "
          "end of a pipe as fd ", fd, ", or leave --ready-fd out"));
    }
    return ErrnoStatus(errno, absl::StrCat("fcntl(ready fd ", fd, ", F_GETFD)"));
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, absl::StrCat("fcntl(ready fd ", fd, ", F_GETFL)"));
  if ((flags & O_ACCMODE) == O_RDONLY) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--ready-fd ", fd, ": fd ", fd, " is open read-only; pass the write end of a pipe"));
  }
  // Owned from here, so that an error below still closes it.
  ReadyFd ready(fd);
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(ready fd ", fd, ", FD_CLOEXEC)"));
  }
  return ready;
}

absl::Status ReadyFd::Notify(absl::string_view line) {
  UniqueFd fd = std::move(fd_);
  std::string text = absl::StrCat(line, "\n");
  ssize_t n = RetryEintr([&] { return write(fd.get(), text.data(), text.size()); });
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("write(ready fd ", fd.get(), ")"));
  // Not continued: the supervisor has read part of a line already, and
  // whatever stopped the write (a file at its size limit, a full disk)
  // stops the rest. errno is not set by a short write.
  if (static_cast<size_t>(n) != text.size()) {
    return absl::ResourceExhaustedError(absl::StrCat("write(ready fd ", fd.get(), "): wrote ", n,
                                                     " of ", text.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status NotifySystemd() {
  const char* value = getenv("NOTIFY_SOCKET");
  std::string path = value ? value : "";
  unsetenv("NOTIFY_SOCKET");
  if (path.empty()) return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET=", Shown(path), " is not usable"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  CB_ASSIGN_OR_RETURN(UniqueFd fd,
                      TakeFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0),
                             "socket(AF_UNIX, SOCK_DGRAM)"));
  static constexpr char kReady[] = "READY=1";
  if (sendto(fd.get(), kReady, sizeof(kReady) - 1, MSG_NOSIGNAL,
             reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    return ErrnoStatus(errno, absl::StrCat("sendto(NOTIFY_SOCKET=", Shown(path), ")"));
  }
  return absl::OkStatus();
}

}  // namespace capbroker::server

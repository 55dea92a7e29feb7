#include "broker/server/readiness.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

absl::Status NotifyReadyFd(int fd, absl::string_view line) {
  UniqueFd owned(fd);
  std::string text = absl::StrCat(line, "\n");
  ssize_t n = RetryEintr([&] { return write(owned.get(), text.data(), text.size()); });
  if (n != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(errno, absl::StrCat("write(ready fd ", fd, ")"));
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
    return absl::InvalidArgumentError(absl::StrCat("NOTIFY_SOCKET=", path, " is not usable"));
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
    return ErrnoStatus(errno, absl::StrCat("sendto(NOTIFY_SOCKET=", path, ")"));
  }
  return absl::OkStatus();
}

}  // namespace capbroker::server

#include "sdk/service/fd_room.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker {

absl::StatusOr<size_t> FreeFdSlots(size_t enough) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return ErrnoStatus(errno, "getrlimit(RLIMIT_NOFILE)");
  }
  const int end = static_cast<int>(std::min<rlim_t>(limit.rlim_cur, INT_MAX));
  size_t free = 0;
  for (int fd = 0; fd < end && free < enough; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    if (errno != EBADF) return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_GETFD)"));
    ++free;
  }
  return free;
}

absl::StatusOr<size_t> FdRoomFor(size_t wanted, size_t reserve, size_t held) {
  absl::StatusOr<size_t> free = FreeFdSlots(wanted + reserve);
  if (!free.ok()) return free.status();
  const size_t usable = *free + held;
  return usable > reserve ? std::min(wanted, usable - reserve) : 0;
}

std::string FdRoomLine(size_t room, size_t wanted, absl::string_view things) {
  return absl::StrCat("the open-file limit (RLIMIT_NOFILE: the service's limits.openFiles) "
                      "leaves room for ",
                      room, " ", things, ": at most ", room, " at once, not ", wanted,
                      "; raise the limit for more");
}

std::optional<std::string> DroppedIncomingLine(uint64_t dropped, uint64_t* seen) {
  if (dropped == *seen) return std::nullopt;
  const uint64_t count = dropped - *seen;
  *seen = dropped;
  return absl::StrCat(
      "dropped ", count, " client connections (their clients see end of stream): they arrived "
      "during a call to the broker with the fd table full (RLIMIT_NOFILE) or 4096 waiting "
      "already; raise limits.openFiles, or make fewer calls while connects wait");
}

}  // namespace capbroker

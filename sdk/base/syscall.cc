#include "sdk/base/syscall.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace capbroker {
namespace {

// How often Openat2 tries a lookup that keeps failing with EAGAIN.
constexpr int kOpenat2Attempts = 8;

// The payload by which Openat2's status carries its errno.
constexpr absl::string_view kOpenatErrno = "capbroker.openat2_errno";

}  // namespace

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

absl::StatusOr<UniqueFd> Openat2(int dirfd, const std::string& path, uint64_t flags, mode_t mode,
                                 uint64_t resolve) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = resolve;
  long fd = -1;
  for (int attempt = 0; attempt < kOpenat2Attempts; ++attempt) {
    fd = RetryEintr([&] { return syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how); });
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno != EAGAIN) break;
  }
  const int errnum = errno;
  absl::Status status =
      ErrnoStatus(errnum, dirfd == AT_FDCWD ? absl::StrCat("openat2(", path, ")")
                                            : absl::StrCat("openat2(fd=", dirfd, ", ", path, ")"));
  status.SetPayload(kOpenatErrno, absl::Cord(absl::StrCat(errnum)));
  return status;
}

int OpenatErrno(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kOpenatErrno);
  int errnum = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &errnum)) return 0;
  return errnum;
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

absl::StatusOr<bool> IsNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_GETFL)"));
  return (flags & O_NONBLOCK) != 0;
}

absl::Duration MonotonicNow() {
  return absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

absl::Duration DeadlineAfter(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return absl::InfiniteDuration();
  return MonotonicNow() + timeout;
}

absl::StatusOr<bool> PollUntil(int fd, short events, absl::Duration deadline) {
  if (deadline == absl::InfiniteDuration()) return true;
  if (fd < 0) return ErrnoStatus(EBADF, absl::StrCat("poll(fd=", fd, ")"));
  for (;;) {
    const absl::Duration left = deadline - MonotonicNow();
    // Rounded up, so that poll does not return just before the deadline
    // and this loop spin; a very long wait takes several rounds. Past the
    // deadline, one look without waiting: what is there already counts.
    const bool past = left <= absl::ZeroDuration();
    const int64_t ms =
        past ? 0
             : std::min<int64_t>(
                   absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
                   std::numeric_limits<int>::max());
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(ms));
    if (n > 0) {
      if (p.revents & POLLNVAL) {
        return ErrnoStatus(EBADF, absl::StrCat("poll(fd=", fd, ")"));
      }
      return true;
    }
    if (n == 0 && past) return false;
    if (n < 0 && errno != EINTR) return ErrnoStatus(errno, absl::StrCat("poll(fd=", fd, ")"));
  }
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

absl::Status MarkCloseOnExecFrom(unsigned int first) {
  if (close_range(first, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    return ErrnoStatus(errno, absl::StrCat("close_range(", first, ", ~0, CLOSE_RANGE_CLOEXEC)"));
  }
  return absl::OkStatus();
}

}  // namespace capbroker

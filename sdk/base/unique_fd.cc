#include "sdk/base/unique_fd.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace capbroker {

void UniqueFd::reset(int fd) {
  int old = fd_;
  fd_ = fd;
  if (old < 0) return;
  // Not retried on EINTR: Linux has released the fd whatever close() says.
  if (close(old) != 0 && errno != EINTR) {
    std::fprintf(stderr, "capbroker: close(fd=%d): %s\n", old,
                 std::strerror(errno));
  }
}

}  // namespace capbroker

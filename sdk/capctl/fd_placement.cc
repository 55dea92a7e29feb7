#include "sdk/capctl/fd_placement.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker {

absl::Status PlaceInheritedFds(std::vector<UniqueFd> fds) {
  const int count = static_cast<int>(fds.size());
  const int above = kListenFdsStart + count;
  std::vector<UniqueFd> high;
  high.reserve(fds.size());
  for (UniqueFd& fd : fds) {
    int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, above);
    if (moved < 0) {
      return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd.get(), ", F_DUPFD_CLOEXEC)"));
    }
    high.emplace_back(moved);
  }
  // The originals may occupy target numbers; close them before the dup2s.
  fds.clear();
  for (int i = 0; i < count; ++i) {
    int target = kListenFdsStart + i;
    if (RetryEintr([&] { return dup2(high[i].get(), target); }) < 0) {
      return ErrnoStatus(errno, absl::StrCat("dup2(", high[i].get(), ", ", target, ")"));
    }
    // dup2 to a new number leaves FD_CLOEXEC clear: `target` is inherited.
  }
  return absl::OkStatus();
}

}  // namespace capbroker

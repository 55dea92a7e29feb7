#include "sdk/capctl/fd_placement.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker {

absl::Status PlaceInheritedFds(std::vector<UniqueFd> fds) {
  const int count = static_cast<int>(fds.size());
  const int end = kListenFdsStart + count;  // targets are [kListenFdsStart, end)
  auto in_range = [&](int fd) { return fd >= kListenFdsStart && fd < end; };
  // waiting_on[t - kListenFdsStart]: the fd still to be placed whose source
  // sits on target number t (-1: none). Target t can be written once none
  // does; the fd meant for t is fds[t - kListenFdsStart].
  std::vector<int> waiting_on(count, -1);
  std::vector<bool> placed(count, false);
  int left = count;
  std::vector<int> ready;  // fds whose target number is free of sources
  for (int i = 0; i < count; ++i) {
    const int source = fds[i].get();
    if (source == kListenFdsStart + i) {
      // Already in place: dup2 onto itself would leave FD_CLOEXEC set.
      if (fcntl(source, F_SETFD, 0) != 0) {
        return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", source, ", F_SETFD, 0)"));
      }
      placed[i] = true;
      --left;
    } else if (in_range(source)) {
      waiting_on[source - kListenFdsStart] = i;
    }
  }
  for (int i = 0; i < count; ++i) {
    if (!placed[i] && waiting_on[i] < 0) ready.push_back(i);
  }
  int next_unplaced = 0;
  while (left > 0) {
    if (ready.empty()) {
      // Only cycles are left (fd 4 must become 3 while 3 must become 4):
      // one source moves above the range, which frees its number.
      while (placed[next_unplaced]) ++next_unplaced;
      const int source = fds[next_unplaced].get();
      const int moved = fcntl(source, F_DUPFD_CLOEXEC, end);
      if (moved < 0) {
        return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", source, ", F_DUPFD_CLOEXEC)"));
      }
      fds[next_unplaced].reset(moved);  // closes `source`
      waiting_on[source - kListenFdsStart] = -1;
      ready.push_back(source - kListenFdsStart);
      continue;
    }
    const int i = ready.back();
    ready.pop_back();
    const int source = fds[i].get();
    const int target = kListenFdsStart + i;
    // Whatever else is open at `target` is replaced (dup2 closes it); no
    // source still to be placed is there.
    if (RetryEintr([&] { return dup2(source, target); }) < 0) {
      return ErrnoStatus(errno, absl::StrCat("dup2(", source, ", ", target, ")"));
    }
    // dup2 to a new number leaves FD_CLOEXEC clear: `target` is inherited.
    // The source closes at once, so that the fds never need more numbers
    // than the layout itself, and its number, if a target, is free.
    fds[i].reset();
    placed[i] = true;
    --left;
    if (in_range(source)) {
      waiting_on[source - kListenFdsStart] = -1;
      if (!placed[source - kListenFdsStart]) ready.push_back(source - kListenFdsStart);
    }
  }
  // The fds already in place belong to nobody here now: the exec'd program.
  for (UniqueFd& fd : fds) {
    if (in_range(fd.get())) (void)fd.release();
  }
  return absl::OkStatus();
}

}  // namespace capbroker

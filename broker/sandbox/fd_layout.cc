#include "broker/sandbox/fd_layout.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/sandbox/settings.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

// A close-on-exec dup of `fd` at or above `floor`.
absl::StatusOr<int> DupAbove(int fd, int floor) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, floor);
  if (copy < 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_DUPFD_CLOEXEC, ", floor, ")"));
  }
  return copy;
}

absl::Status CloseRange(unsigned first, unsigned last) {
  if (first > last) return absl::OkStatus();
  if (close_range(first, last, 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("close_range(", first, ", ", last, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int>> ApplyFdLayout(absl::Span<const int> sources,
                                               absl::Span<const int> keep) {
  const int count = static_cast<int>(sources.size());
  // 1. Copy every source and every kept fd above the target range, so that
  // placing one target can never overwrite a source still to be placed.
  std::vector<int> high_sources;
  high_sources.reserve(sources.size());
  for (int fd : sources) {
    CB_ASSIGN_OR_RETURN(int copy, DupAbove(fd, count));
    high_sources.push_back(copy);
  }
  std::vector<int> kept;
  kept.reserve(keep.size());
  for (int fd : keep) {
    CB_ASSIGN_OR_RETURN(int copy, DupAbove(fd, count));
    kept.push_back(copy);
  }
  // 2. Place the targets; dup2 clears close-on-exec on the new fd.
  for (int target = 0; target < count; ++target) {
    if (dup2(high_sources[target], target) != target) {
      return ErrnoStatus(errno, absl::StrCat("dup2(", high_sources[target], ", ", target, ")"));
    }
  }
  // 3. Close everything above the targets but the kept fds.
  CB_RETURN_IF_ERROR(CloseAllExcept(count, kept));
  return kept;
}

absl::Status CloseAllExcept(int first, std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned from = static_cast<unsigned>(first);
  for (int fd : keep) {
    if (fd < first || static_cast<unsigned>(fd) < from) continue;  // below, or a duplicate
    CB_RETURN_IF_ERROR(CloseRange(from, static_cast<unsigned>(fd) - 1));
    from = static_cast<unsigned>(fd) + 1;
  }
  return CloseRange(from, UINT_MAX);
}

std::vector<std::string> ServiceEnvironment(const std::vector<std::string>& base,
                                            const std::vector<std::string>& fd_names,
                                            int broker_fd, pid_t listen_pid) {
  std::vector<std::string> env = base;
  if (!fd_names.empty()) {
    env.push_back(absl::StrCat("LISTEN_FDS=", fd_names.size()));
    env.push_back(absl::StrCat("LISTEN_PID=", listen_pid));
    env.push_back(absl::StrCat("LISTEN_FDNAMES=", absl::StrJoin(fd_names, ":")));
  }
  if (broker_fd >= 0) env.push_back(absl::StrCat("CAPBROKER_FD=", broker_fd));
  return env;
}

std::string ReservedVariableIn(const std::vector<std::string>& base) {
  for (const std::string& entry : base) {
    for (absl::string_view name : kReservedVariables) {
      if (absl::StartsWith(entry, absl::StrCat(name, "="))) return std::string(name);
    }
  }
  return "";
}

}  // namespace capbroker::sandbox

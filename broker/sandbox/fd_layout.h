// The service's fd table and environment: 0, 1, 2, then the passed fds at
// 3.., as systemd's socket activation lays them out (sd_listen_fds(3)).
//
// Runs in the child between clone and execve, so it only borrows fds and
// never allocates more than the environment strings.
#ifndef CAPBROKER_BROKER_SANDBOX_FD_LAYOUT_H_
#define CAPBROKER_BROKER_SANDBOX_FD_LAYOUT_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace capbroker::sandbox {

// Makes the fd table exactly: fd i is a dup of `sources[i]` (borrowed; one
// source may serve several targets, as the output pipe does for 1 and 2),
// without close-on-exec; plus a close-on-exec dup of each `keep` fd, placed
// above the targets, whose new numbers are returned in order. Every other
// fd is closed (close_range). Sources may sit anywhere, including inside
// the target range: everything is first copied above it.
absl::StatusOr<std::vector<int>> ApplyFdLayout(absl::Span<const int> sources,
                                               absl::Span<const int> keep);

// Closes every fd numbered `first` or more except those in `keep` (any
// order; entries below `first` or -1 are ignored), with close_range(2).
absl::Status CloseAllExcept(int first, std::vector<int> keep);

// The service's environment: `base` ("KEY=VALUE", nothing inherited), then
// LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES when `fd_names` is not empty,
// then CAPBROKER_FD=<broker_fd> when `broker_fd` >= 0. `listen_pid` is the
// service's pid as it sees itself (1 in a new pid namespace).
std::vector<std::string> ServiceEnvironment(const std::vector<std::string>& base,
                                            const std::vector<std::string>& fd_names,
                                            int broker_fd, pid_t listen_pid);

// Whether `base` sets a variable ServiceEnvironment adds (LISTEN_FDS,
// LISTEN_PID, LISTEN_FDNAMES, CAPBROKER_FD): "" if not, else its name.
std::string ReservedVariableIn(const std::vector<std::string>& base);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_FD_LAYOUT_H_

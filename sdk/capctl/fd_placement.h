// PlaceInheritedFds: arranges fds at 3, 4, ... for a program about to be
// exec'd, the layout of systemd socket activation (sd_listen_fds(3)).
#ifndef CAPBROKER_SDK_CAPCTL_FD_PLACEMENT_H_
#define CAPBROKER_SDK_CAPCTL_FD_PLACEMENT_H_

#include <vector>

#include "absl/status/status.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {

// The first fd of the sd_listen_fds layout (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;

// Moves `fds` (taken) to kListenFdsStart, kListenFdsStart + 1, ... in order
// and clears FD_CLOEXEC on those, and only those, so that exactly they
// survive the next exec. On success the placed fds belong to nobody in this
// process: they are meant for the exec'd program. Any fd already open at a
// target number is replaced (dup2 closes it).
//
// A source fd can itself sit in the target range (the usual case: the fds
// arrived at 4, 5, ... after the broker connection took 3): a target is
// written only once no source still to be placed sits on it, and each
// source closes as soon as it is placed, which frees its number for the
// fd meant for it. Only a cycle (fd 4 must become fd 3 while fd 3 must
// become fd 4) needs one number more, above the range (F_DUPFD_CLOEXEC):
// so placing needs at most one free fd number, however many fds there
// are. dup2 onto a different number never carries FD_CLOEXEC over; an fd
// already at its number has the flag cleared.
//
// On failure the fds not yet placed are closed; those placed stay open,
// without FD_CLOEXEC: the caller is about to exit rather than exec.
absl::Status PlaceInheritedFds(std::vector<UniqueFd> fds);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CAPCTL_FD_PLACEMENT_H_

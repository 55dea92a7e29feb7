// Start-up checks of what the broker runs in: its pid namespace's /proc,
// and which peers its user namespace cannot tell apart. Run once, before
// the broker serves; a check that fails stops the start (fail closed).
#ifndef CAPBROKER_BROKER_DAEMON_ENVIRONMENT_H_
#define CAPBROKER_BROKER_DAEMON_ENVIRONMENT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/peer/unmapped_ids.h"

namespace capbroker::daemon {

// kFailedPrecondition unless /proc is the procfs of the broker's own pid
// namespace: /proc/self must read as the broker's pid (getpid). The broker
// reads a client's executable at /proc/PID/exe, PID being what SO_PEERCRED
// says, a pid in the broker's pid namespace. In another namespace's procfs
// (`unshare --pid --fork` without --mount-proc, a container sharing the
// host's /proc) that number is some other process's, or nobody's, and a
// client would be identified by an unrelated program. The error says so
// and what to do: mount a procfs for the broker's pid namespace.
absl::Status CheckOwnProcfs();

// peer::ReadUnmappedIds, and when the broker's user namespace does not
// map every uid or gid, a note on stderr that peers with the overflow id
// are refused, and why. An error stops the start. Call it after
// CheckOwnProcfs: a missing id map is taken for a kernel without user
// namespaces, which holds only if /proc is the broker's.
absl::StatusOr<peer::UnmappedIds> ReadUnmappedPeerIds();

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_ENVIRONMENT_H_

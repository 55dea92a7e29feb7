// Start-up checks of what the broker runs in: which peers its user
// namespace cannot tell apart. Run once, before the broker serves; a check
// that fails stops the start (fail closed).
#ifndef CAPBROKER_BROKER_DAEMON_ENVIRONMENT_H_
#define CAPBROKER_BROKER_DAEMON_ENVIRONMENT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/peer/unmapped_ids.h"

namespace capbroker::daemon {

// peer::ReadUnmappedIds, and when the broker's user namespace leaves the
// overflow uid or gid unmapped, a note on stderr that peers with them are
// refused, and why. An error stops the start.
absl::StatusOr<peer::UnmappedIds> ReadUnmappedPeerIds();

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_ENVIRONMENT_H_

// FreeFdSlots: how many more fds this process can open before
// RLIMIT_NOFILE stops it, for loops that bound what they take by it.
//
// Why it matters: a service receives each client connection as an fd in
// SCM_RIGHTS on its broker connection. At RLIMIT_NOFILE the kernel cannot
// install it, closes it, and sets MSG_CTRUNC on the datagram: the Client
// drops that connection (its client sees end of stream) and counts it
// (Client::dropped_incoming). So a loop takes at most as many connections
// as its fd table has room for, less a reserve, and closes those beyond
// it, which it can always receive, telling their clients why. Only a call
// the service makes to the broker, which reads every event ahead of its
// reply while the loop takes none, still fills the table; the loop logs
// what the Client dropped then (DroppedIncomingLine).
#ifndef CAPBROKER_SDK_SERVICE_FD_ROOM_H_
#define CAPBROKER_SDK_SERVICE_FD_ROOM_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker {

// Fds a loop keeps free beyond those it counts per connection: the next
// connection's fd, received before it can be refused, and the few a turn
// opens for a moment.
inline constexpr size_t kFdReserve = 8;

// The fd numbers below RLIMIT_NOFILE's soft limit that no fd holds now
// (fds are allocated below the limit, lowest free number first), that is
// how many more fds this process can open; the count stops at `enough`.
// Each number from 0 up is looked at with fcntl(F_GETFD), which asks the
// fd table only: poll(2) would be one call, but asks each open file's
// driver, and a file on a FUSE file system asks its server, which may
// never answer. Uses no /proc, which a service's sandbox may not have.
// Fds opened or closed meanwhile (other threads) may be miscounted.
absl::StatusOr<size_t> FreeFdSlots(size_t enough);

// `wanted`, or fewer: how many things that hold one fd each fit in the fds
// this process can still open, plus the `held` fds it holds already for
// such things, after `reserve`. The reserve comes out of both: things that
// hold their fds already do not make up for a reserve the table lacks.
absl::StatusOr<size_t> FdRoomFor(size_t wanted, size_t reserve, size_t held);

// The line a loop logs when the fd table has room for `room` of the
// `wanted` `things` ("client connections").
std::string FdRoomLine(size_t room, size_t wanted, absl::string_view things);

// The line a loop logs when the broker connection's Client has dropped
// connections (Client::dropped_incoming) since `*seen`, its count when the
// loop last looked, which this advances to `dropped`; std::nullopt when
// there are none new.
std::optional<std::string> DroppedIncomingLine(uint64_t dropped, uint64_t* seen);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_FD_ROOM_H_

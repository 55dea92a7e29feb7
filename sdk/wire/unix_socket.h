// AF_UNIX SOCK_SEQPACKET sockets: addresses, connecting and socketpairs.
// Every socket is created close-on-exec.
#ifndef CAPBROKER_SDK_WIRE_UNIX_SOCKET_H_
#define CAPBROKER_SDK_WIRE_UNIX_SOCKET_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::wire {

// A pathname socket address. kInvalidArgument when `path` is empty, holds a
// NUL, or does not fit sun_path (107 bytes and the terminating NUL on Linux).
struct UnixAddress {
  sockaddr_un addr;
  socklen_t length;
};
absl::StatusOr<UnixAddress> MakeUnixAddress(absl::string_view path);

// A new SOCK_SEQPACKET socket connected to `path`. kNotFound when nothing
// exists at `path`, kUnavailable when nothing listens there (ECONNREFUSED),
// kFailedPrecondition with IsOtherSocketType when the socket there is of
// another type (EPROTOTYPE: a stream or datagram socket, a live one of
// another program, so neither a broker's nor a stale broker socket).
absl::StatusOr<UniqueFd> ConnectSeqpacket(absl::string_view path);

// Whether `status`, from ConnectSeqpacket, says the socket at the path is
// not a SOCK_SEQPACKET socket.
bool IsOtherSocketType(const absl::Status& status);

// A connected pair of SOCK_SEQPACKET sockets.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> SeqpacketPair();

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_UNIX_SOCKET_H_

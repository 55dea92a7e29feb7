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
#include "absl/time/time.h"
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
//
// connect(2) completes while the listener's queue of connections not yet
// accepted has room, and waits while it is full (a listener that stopped
// accepting: a broker whose only thread is stuck). `timeout` bounds that
// wait (kDeadlineExceeded); absl::InfiniteDuration(), the default, waits
// as long as it takes. The bound is the socket's send timeout
// (SO_SNDTIMEO), which the kernel applies to connect(2), set to the time
// left before each attempt (a signal does not renew it) and cleared once
// connected.
absl::StatusOr<UniqueFd> ConnectSeqpacket(absl::string_view path,
                                          absl::Duration timeout = absl::InfiniteDuration());

// Whether `status`, from ConnectSeqpacket, says the socket at the path is
// not a SOCK_SEQPACKET socket.
bool IsOtherSocketType(const absl::Status& status);

// A connected pair of SOCK_SEQPACKET sockets.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> SeqpacketPair();

// Refusing fds. A socket with SO_PASSRIGHTS off (Linux 6.16) refuses the fds
// its peer sends: the peer's sendmsg with SCM_RIGHTS fails with EPERM and
// nothing is queued, so the receiver never holds a peer's file, not even in
// flight, and never drops one either. That is the point: dropping the last
// reference to a file runs its release in the thread that drops it, and
// some releases take as long as the file's owner likes (a TCP socket with
// SO_LINGER and data its peer never reads waits out the linger in
// tcp_close; a FUSE file's flush waits for its server). Receiving without
// room for fds (FdPolicy::kRefuse in datagram.h) is not enough: the kernel
// then drops them inside the receiver's recvmsg, and closing a socket drops
// whatever waits unread in it.
//
// The kernel checks the option of the receiving socket when the peer sends.
// A connection takes its listener's option when the client connects, not
// when it is accepted: set it on a listening socket before listen(), and on
// a socketpair end before the other end is handed to anyone.

// Turns fd-passing off on `fd` (borrowed). kUnimplemented when the kernel
// has no SO_PASSRIGHTS (ENOPROTOOPT: before Linux 6.16); otherwise
// setsockopt's errno.
absl::Status RefuseFds(int fd);

// RefuseFds where the kernel can: OK on a kernel without SO_PASSRIGHTS,
// where what is sent can only be received without room for fds
// (FdPolicy::kRefuse). For sockets whose owner warns about old kernels
// elsewhere (capbrokerd at start) or cannot do better.
absl::Status RefuseFdsWhereSupported(int fd);

// Whether `fd` (borrowed) takes fds from its peer (SO_PASSRIGHTS on, the
// default). kUnimplemented as for RefuseFds.
absl::StatusOr<bool> TakesFds(int fd);

// Turns off SO_PASSCRED, SO_PASSSEC and SO_PASSPIDFD on `fd` (borrowed), as
// a systemd unit's PassCredentials=, PassSecurity= or PassPIDFD= leaves
// them on a listening socket and its connections: with any on, every
// datagram comes with a control message, which a receive or a peek without
// room for one reports as MSG_CTRUNC, as for fds. The kernel looks at the
// receiving socket's options when it reads, so datagrams already queued
// then read clean. An option this kernel lacks (ENOPROTOOPT) is off.
absl::Status StopCredentialMessages(int fd);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_UNIX_SOCKET_H_

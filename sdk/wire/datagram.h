// One datagram on an AF_UNIX SOCK_SEQPACKET socket: one message and the fds
// that ride with it in SCM_RIGHTS.
//
// Receiving enforces every limit of limits.h before the bytes are parsed:
// - fds arrive close-on-exec (MSG_CMSG_CLOEXEC), owned by UniqueFds at once;
// - the pidfd of an SCM_PIDFD message (a socket with SO_PASSPIDFD on gets
//   one with every datagram: see StopCredentialMessages) is closed at once:
//   it is none of the datagram's fds;
// - a datagram larger than kMaxMessageBytes arrives with MSG_TRUNC: its fds
//   are closed and the call fails with kResourceExhausted; the connection
//   stays usable, since the kernel discarded the rest of that datagram only;
// - a datagram whose fds did not all fit arrives with MSG_CTRUNC: more than
//   kMaxFdsPerMessage were sent, or the receiver reached its RLIMIT_NOFILE,
//   or a security module refused one. The kernel installs the fds in the
//   order they were sent and stops at the first it cannot install (buffer
//   full, EMFILE, or the module's refusal: net/core/scm.c, scm_detach_fds),
//   closing the rest, so those that arrive are the first ones sent. By
//   default (FdPolicy::kAccept) the call fails with kDataLoss and the
//   caller must close the connection (as dbus-broker does): the broker, and
//   every receiver that cannot tell a missing fd from a lying peer. A
//   receiver whose protocol says how many fds each message lists can opt
//   in to the message with its fds cut (FdPolicy::kAcceptWhatFits).
#ifndef CAPBROKER_SDK_WIRE_DATAGRAM_H_
#define CAPBROKER_SDK_WIRE_DATAGRAM_H_

#include <sys/uio.h>

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "capnp/common.h"
#include "kj/array.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/limits.h"

namespace capbroker::wire {

// Word-aligned storage for one received datagram, with one spare word so that
// a datagram of exactly kMaxMessageBytes is told apart from a larger one.
// 64 KiB: allocate one per receiving thread, not one per connection.
class ReceiveBuffer {
 public:
  ReceiveBuffer() : words_(kj::heapArray<capnp::word>(kWords)) {}
  capnp::word* data() { return words_.begin(); }
  static constexpr size_t kWords = kMaxMessageBytes / sizeof(capnp::word) + 1;

 private:
  kj::Array<capnp::word> words_;
};

// A received datagram. `words` points into the ReceiveBuffer and is valid
// until the next receive into it.
struct Datagram {
  kj::ArrayPtr<const capnp::word> words;
  std::vector<UniqueFd> fds;
  // The datagram carried more fds than `fds` holds; the kernel closed the
  // rest without saying how many there were. With FdPolicy::kRefuse, all it
  // carried, discarded without installing them (and released, if it held
  // their last references: see FdPolicy); with kAcceptWhatFits, those after
  // the first fds.size(), which are the first ones sent.
  bool fds_cut = false;
};

// Whether a receiver takes the fds a datagram carries.
enum class FdPolicy {
  // Takes them all: a datagram whose fds did not all fit (MSG_CTRUNC) is
  // kDataLoss, its fds closed.
  kAccept,
  // Takes those that fit: a datagram whose fds did not all fit arrives with
  // fds_cut set and the first ones sent (see the top of this file). For a
  // receiver that can match the message with what came, since the message
  // lists its fds (the SDK's Client, which must stay in step with the
  // broker when its own fd table is full); it must check the count itself.
  kAcceptWhatFits,
  // Receive without a control buffer: the kernel never installs the fds in
  // the receiver, so it never closes one (close() of a FUSE file waits for
  // the FUSE server to answer a FLUSH). That is not harmless: the kernel
  // drops the datagram's references inside this recvmsg, and when one was
  // the last (the sender closed its copies), the file's release runs right
  // here, in the receiver's thread, before recvmsg returns. A TCP socket
  // with SO_LINGER and data its peer never reads waits there for the whole
  // linger, as long as its sender likes; closing a socket with such
  // datagrams unread does the same. A receiver that takes no fds must
  // refuse them at the socket, before they are sent: RefuseFds
  // (unix_socket.h, Linux 6.16). kRefuse is what is left where the kernel
  // cannot refuse, and a check that nothing slipped through.
  kRefuse,
};

// Marks `status` as saying that what a peer sent was malformed (too large,
// not whole words, its fds cut short, a bad segment table), as
// ReceiveDatagram and Channel::Receive do; IsMalformedDatagram tells such
// an error from a receive that failed itself (recvmsg's errno: ENOMEM, say,
// which maps to the same code as a datagram too large).
absl::Status MalformedDatagram(absl::Status status);
bool IsMalformedDatagram(const absl::Status& status);

// Receives one datagram from `fd` (borrowed). Blocks if `fd` is blocking.
// Returns std::nullopt when a non-blocking `fd` has nothing to read.
// Errors: kUnavailable when the peer has closed the connection (or reset
// it: datagrams it sent before are still received first);
// kResourceExhausted for MSG_TRUNC; kDataLoss for MSG_CTRUNC with
// FdPolicy::kAccept (close the connection); kInvalidArgument for a length
// that is not a whole number of words (those three marked
// MalformedDatagram); otherwise the errno of recvmsg.
//
// An empty datagram (SOCK_SEQPACKET allows them) is reported as a Datagram
// with no words; recvmsg returns 0 for it as for end of stream, and only a
// hang-up on the socket tells end of stream apart.
absl::StatusOr<std::optional<Datagram>> ReceiveDatagram(
    int fd, ReceiveBuffer& buffer, FdPolicy fd_policy = FdPolicy::kAccept);

// What waits first in a socket's receive queue.
enum class Waiting {
  kNothing,          // the queue is empty and the peer still connected
  kDatagram,         // a datagram without fds (perhaps an empty one)
  kDatagramWithFds,  // a datagram that carries fds
  kEndOfStream,      // the queue is empty and the peer has hung up
};

// Looks at the first datagram waiting in `fd` (borrowed) without taking it
// and without installing its fds: MSG_PEEK | MSG_DONTWAIT with no control
// buffer, so the kernel says that fds came with MSG_CTRUNC (on a socket
// without credential messages: see StopCredentialMessages in
// unix_socket.h) and drops only the extra
// references it took for the peek, never the datagram's own (which only a
// receive, or closing the socket, drops). Safe on a socket whose peer is
// hostile, provided nothing else reads it meanwhile. recvmsg returns 0 both
// for an empty datagram and for end of stream; when the peer has hung up,
// one more peek with SO_PASSCRED on tells them apart (a datagram comes with
// credentials, end of stream with none), and the option is put back as it
// was. Errors: the errno of recvmsg, or of getsockopt/setsockopt.
absl::StatusOr<Waiting> PeekDatagram(int fd);

namespace internal {
// PeekDatagram's last step, exposed for tests only (the state it meets, a
// reset left by a peer that hung up after PeekDatagram's first peek, cannot
// be made to happen between two calls of a test): with the peer hung up and
// a peek at `fd` (borrowed) having returned 0 without MSG_CTRUNC, whether
// an empty datagram waits (true) or the stream has ended (false).
absl::StatusOr<bool> EmptyDatagramWaits(int fd);
}  // namespace internal

// Sends `iov` as one datagram with `fds` (borrowed: the kernel installs
// copies in the receiver) on `fd` (borrowed), with MSG_NOSIGNAL.
// Returns false, having sent nothing, when a non-blocking `fd` is full.
// Errors: kInvalidArgument for more than kMaxFdsPerMessage fds; kUnavailable
// when the peer is gone (EPIPE, ECONNRESET); kPermissionDenied, saying so,
// when the receiving socket refuses fds (EPERM: see RefuseFds; the broker
// takes none, a hosted service only when its policy says acceptsFds);
// otherwise sendmsg's errno.
absl::StatusOr<bool> SendDatagram(int fd, const iovec* iov, size_t iov_count,
                                  absl::Span<const int> fds);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_DATAGRAM_H_

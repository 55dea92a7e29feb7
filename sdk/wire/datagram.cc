#include "sdk/wire/datagram.h"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::wire {
namespace {

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04  // Linux 6.5 (include/linux/socket.h); Debian 12's headers predate it
#endif

constexpr size_t kControlBytes = CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage);

// The fds in a control message's data, in order.
std::vector<UniqueFd> FdsOf(const cmsghdr* c) {
  std::vector<UniqueFd> fds;
  const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  const unsigned char* data = CMSG_DATA(c);
  for (size_t i = 0; i < count; ++i) {
    int fd;
    std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
    fds.emplace_back(fd);
  }
  return fds;
}

// Takes ownership of every fd in the SCM_RIGHTS messages of `msg`, and
// closes the pidfd of an SCM_PIDFD message. A socket with SO_PASSPIDFD on
// gets one with every datagram, installed in this process: it is none of
// the message's fds, and kept it would leak one fd per datagram. The
// broker and Client::FromFd turn the option off (StopCredentialMessages);
// this holds for every receiver, whatever its socket's options.
std::vector<UniqueFd> TakeFds(msghdr& msg) {
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      for (UniqueFd& fd : FdsOf(c)) fds.push_back(std::move(fd));
    } else if (c->cmsg_type == SCM_PIDFD) {
      FdsOf(c).clear();  // closes the pidfd
    }
  }
  return fds;
}

// recvmsg returned 0: an empty datagram, or the peer has hung up.
bool PeerHungUp(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (RetryEintr([&] { return poll(&p, 1, 0); }) < 0) return true;
  return (p.revents & (POLLHUP | POLLRDHUP)) != 0;
}

// One look at the datagram waiting first in `fd`: MSG_PEEK | MSG_DONTWAIT,
// one byte at most, no control buffer (so no fd is installed; fds or
// credentials that came show as MSG_CTRUNC in `flags`).
struct Peek {
  ssize_t n;  // what recvmsg returned
  int error;  // its errno when n < 0
  int flags;  // msg_flags
};

// Peeks at `fd` (see Peek). A peer that closes with datagrams of ours
// unread leaves ECONNRESET on our socket, which the kernel reports once,
// before what the peer sent (see ReceiveDatagram): the peek is retried
// once then, so that every peek sees what waits rather than the reset,
// whenever the peer hangs up.
Peek PeekNext(int fd) {
  char byte;
  iovec iov{&byte, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT); });
  if (n < 0 && errno == ECONNRESET) {
    msg.msg_flags = 0;
    n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT); });
  }
  return Peek{n, n < 0 ? errno : 0, msg.msg_flags};
}

}  // namespace

namespace internal {

// A peek of `fd` returned 0 without MSG_CTRUNC, and the peer has hung up,
// so nothing more can arrive: either an empty datagram (SOCK_SEQPACKET
// allows them) waits, or the stream has ended. Neither that return, nor
// poll (POLLIN and POLLHUP hold either way), nor SIOCINQ (the bytes
// queued: 0 for empty datagrams) tells which. The kernel builds control
// messages only for a datagram it returns, and returns 0 for end of stream
// before it builds any (net/unix/af_unix.c, __unix_dgram_recvmsg):
// with SO_PASSCRED on, every datagram, empty or not, comes with its
// sender's credentials, which a peek without a control buffer reports as
// MSG_CTRUNC. So one more peek with SO_PASSCRED on tells them apart; the
// option is put back as it was before returning (the broker keeps it off:
// StopCredentialMessages). No fd is installed: the peek has no control
// buffer. The peer may have hung up after the first peek, with datagrams
// of ours unread: this peek then meets the reset, and PeekNext looks past
// it.
absl::StatusOr<bool> EmptyDatagramWaits(int fd) {
  int was = 0;
  socklen_t length = sizeof(was);
  if (getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &was, &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_PASSCRED)"));
  }
  const int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", SO_PASSCRED, 1)"));
  }
  const Peek peek = PeekNext(fd);
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &was, sizeof(was)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", SO_PASSCRED, ", was, ")"));
  }
  if (peek.n < 0) {
    return ErrnoStatus(peek.error, absl::StrCat("recvmsg(fd=", fd, ", MSG_PEEK, SO_PASSCRED)"));
  }
  return (peek.flags & MSG_CTRUNC) != 0;
}

}  // namespace internal

namespace {

// The payload that marks a MalformedDatagram status.
constexpr char kMalformedDatagram[] = "capbroker.wire/MalformedDatagram";

}  // namespace

absl::Status MalformedDatagram(absl::Status status) {
  status.SetPayload(kMalformedDatagram, absl::Cord());
  return status;
}

bool IsMalformedDatagram(const absl::Status& status) {
  return status.GetPayload(kMalformedDatagram).has_value();
}

absl::StatusOr<std::optional<Datagram>> ReceiveDatagram(int fd, ReceiveBuffer& buffer,
                                                        FdPolicy fd_policy) {
  alignas(cmsghdr) unsigned char control[kControlBytes];
  iovec iov{buffer.data(), ReceiveBuffer::kWords * sizeof(capnp::word)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const bool takes_fds = fd_policy != FdPolicy::kRefuse;
  if (takes_fds) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
  }
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_CMSG_CLOEXEC); });
  bool reset = n < 0 && errno == ECONNRESET;
  if (reset) {
    // A peer that closes with datagrams of ours unread leaves ECONNRESET
    // on our socket, and the kernel reports it (once) before the datagrams
    // the peer sent us that still wait, such as its reason for closing (the
    // broker's refusal of a connection). They are read first: the reset
    // then reads as end of stream after them.
    msg.msg_flags = 0;
    if (takes_fds) msg.msg_controllen = sizeof(control);
    n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); });
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return absl::UnavailableError("the peer reset the connection");
    }
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::nullopt;
    if (errno == ECONNRESET) {
      return absl::UnavailableError("the peer reset the connection");
    }
    return ErrnoStatus(errno, absl::StrCat("recvmsg(fd=", fd, ")"));
  }
  Datagram datagram;
  datagram.fds = TakeFds(msg);
  datagram.fds_cut = (msg.msg_flags & MSG_CTRUNC) != 0;
  if (datagram.fds_cut && fd_policy == FdPolicy::kAccept) {
    // The fds that came are closed as `datagram` goes out of scope. The
    // kernel does not say which cause it was: a sender past the limit, or a
    // receiver at its RLIMIT_NOFILE (the usual cause on a client, since the
    // broker sends at most a few), or a security module refusing an fd.
    return MalformedDatagram(absl::DataLossError(absl::StrCat(
        "the fds of a datagram did not all arrive (it carried more than the ",
        kMaxFdsPerMessage, " allowed, or the receiver reached its open-file limit, "
        "RLIMIT_NOFILE): closing the connection")));
  }
  // The buffer holds one word more than the limit, so that a datagram of one
  // word over is seen here rather than cut without MSG_TRUNC.
  if ((msg.msg_flags & MSG_TRUNC) || static_cast<size_t>(n) > kMaxMessageBytes) {
    return MalformedDatagram(absl::ResourceExhaustedError(
        absl::StrCat("datagram larger than the ", kMaxMessageBytes, " bytes allowed")));
  }
  if (n == 0 && datagram.fds.empty() && !datagram.fds_cut && PeerHungUp(fd)) {
    return absl::UnavailableError(reset ? "the peer reset the connection"
                                        : "the peer closed the connection");
  }
  if (n % sizeof(capnp::word) != 0) {
    return MalformedDatagram(absl::InvalidArgumentError(
        absl::StrCat("datagram of ", n, " bytes is not a whole number of 8-byte words")));
  }
  datagram.words = kj::arrayPtr(buffer.data(), n / sizeof(capnp::word));
  return std::optional<Datagram>(std::move(datagram));
}

absl::StatusOr<Waiting> PeekDatagram(int fd) {
  const Peek peek = PeekNext(fd);
  if (peek.n < 0) {
    if (peek.error == EAGAIN || peek.error == EWOULDBLOCK) return Waiting::kNothing;
    return ErrnoStatus(peek.error, absl::StrCat("recvmsg(fd=", fd, ", MSG_PEEK)"));
  }
  if (peek.flags & MSG_CTRUNC) return Waiting::kDatagramWithFds;
  // 0 from a peer still connected is an empty datagram: end of stream needs
  // the hang-up, which once there stays (so a later poll that sees none
  // proves there was none at the peek).
  if (peek.n > 0 || !PeerHungUp(fd)) return Waiting::kDatagram;
  CB_ASSIGN_OR_RETURN(bool empty_datagram, internal::EmptyDatagramWaits(fd));
  return empty_datagram ? Waiting::kDatagram : Waiting::kEndOfStream;
}

absl::StatusOr<bool> SendDatagram(int fd, const iovec* iov, size_t iov_count,
                                  absl::Span<const int> fds) {
  if (fds.size() > kMaxFdsPerMessage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot send ", fds.size(), " fds in one datagram; at most ",
        kMaxFdsPerMessage));
  }
  alignas(cmsghdr) unsigned char control[kControlBytes];
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iov_count;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n = RetryEintr([&] { return sendmsg(fd, &msg, MSG_NOSIGNAL); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
      return absl::UnavailableError("the peer closed the connection");
    }
    if (errno == EPERM && !fds.empty()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "sendmsg(fd=", fd, ", fds=", fds.size(),
          "): the receiving socket refuses fds (SO_PASSRIGHTS off): the broker takes "
          "none, and a hosted service only if its policy says acceptsFds = true"));
    }
    return ErrnoStatus(errno, absl::StrCat("sendmsg(fd=", fd, ", fds=",
                                           fds.size(), ")"));
  }
  return true;
}

}  // namespace capbroker::wire

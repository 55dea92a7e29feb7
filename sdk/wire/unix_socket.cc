#include "sdk/wire/unix_socket.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/escape.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

// The value in asm-generic, which x86 and arm use; headers older than
// Linux 6.16 lack it.
#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83
#endif
// Linux 6.5; the same value on x86 and arm.
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

namespace capbroker::wire {
namespace {

// The payload that marks ConnectSeqpacket's EPROTOTYPE status.
constexpr char kOtherSocketType[] = "capbroker.wire/OtherSocketType";

absl::Status PassRightsError(int err, absl::string_view what, int fd) {
  if (err == ENOPROTOOPT) {
    return absl::UnimplementedError(
        "this kernel cannot refuse fds sent on a socket (SO_PASSRIGHTS came with Linux 6.16)");
  }
  return ErrnoStatus(err, absl::StrCat(what, "(fd=", fd, ", SO_PASSRIGHTS)"));
}

// Sets the send timeout (SO_SNDTIMEO) of `fd` (borrowed); zero: none.
absl::Status SetSendTimeout(int fd, absl::Duration timeout) {
  const timeval tv = absl::ToTimeval(timeout);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", SO_SNDTIMEO)"));
  }
  return absl::OkStatus();
}

}  // namespace


absl::StatusOr<UnixAddress> MakeUnixAddress(absl::string_view path) {
  UnixAddress a{};
  a.addr.sun_family = AF_UNIX;
  if (path.empty()) {
    return absl::InvalidArgumentError("socket path is empty");
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("socket path contains a NUL byte");
  }
  if (path.size() >= sizeof(a.addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path is ", path.size(), " bytes; at most ",
        sizeof(a.addr.sun_path) - 1, " fit in sun_path: ", Escaped(path)));
  }
  std::memcpy(a.addr.sun_path, path.data(), path.size());
  a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                    path.size() + 1);
  return a;
}

absl::StatusOr<UniqueFd> ConnectSeqpacket(absl::string_view path, absl::Duration timeout) {
  CB_ASSIGN_OR_RETURN(UnixAddress address, MakeUnixAddress(path));
  // Whoever gave the path, its messages show it on one line.
  const std::string shown = Escaped(path);
  CB_ASSIGN_OR_RETURN(
      UniqueFd fd, TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0),
                          "socket(AF_UNIX, SOCK_SEQPACKET)"));
  const bool bounded = timeout != absl::InfiniteDuration();
  const absl::Duration deadline = DeadlineAfter(timeout);
  int rc;
  for (;;) {
    if (bounded) {
      // At least 1 us: a zero SO_SNDTIMEO means no timeout at all. A
      // timeout already used up still gets one try, so that the error says
      // what is wrong (no socket, nobody listening), not "queue full".
      const absl::Duration left = deadline - MonotonicNow();
      CB_RETURN_IF_ERROR(SetSendTimeout(fd.get(), std::max(left, absl::Microseconds(1))));
    }
    rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.addr), address.length);
    // A signal interrupts the wait for room (EINTR) before anything is
    // queued: the socket is still unconnected, and connecting again is safe.
    if (rc == 0 || errno != EINTR) break;
  }
  if (rc != 0) {
    int err = errno;
    if (err == EAGAIN && bounded) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the broker at ", shown, " did not accept the connection within ",
          absl::FormatDuration(timeout),
          ": its listen queue is full (a broker that has stopped accepting connections)"));
    }
    if (err == ECONNREFUSED) {
      return absl::UnavailableError(
          absl::StrCat("no broker is listening on ", shown));
    }
    if (err == EPROTOTYPE) {
      // Not kUnavailable: a broker at start takes that for a stale socket
      // of its own and removes it, and this one is another program's.
      absl::Status status = absl::FailedPreconditionError(absl::StrCat(
          "the socket at ", shown, " is a stream or datagram socket, not a SOCK_SEQPACKET one: ",
          "connect(): ", strerror(err)));
      status.SetPayload(kOtherSocketType, absl::Cord("EPROTOTYPE"));
      return status;
    }
    return ErrnoStatus(err, absl::StrCat("connect(", shown, ")"));
  }
  // The connection's sends are bounded, where they are, by their owner.
  if (bounded) CB_RETURN_IF_ERROR(SetSendTimeout(fd.get(), absl::ZeroDuration()));
  return fd;
}

bool IsOtherSocketType(const absl::Status& status) {
  return status.GetPayload(kOtherSocketType).has_value();
}

absl::StatusOr<std::pair<UniqueFd, UniqueFd>> SeqpacketPair() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoStatus(errno, "socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  return std::make_pair(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

absl::Status RefuseFds(int fd) {
  int off = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_PASSRIGHTS, &off, sizeof(off)) != 0) {
    return PassRightsError(errno, "setsockopt", fd);
  }
  return absl::OkStatus();
}

absl::Status RefuseFdsWhereSupported(int fd) {
  absl::Status refused = RefuseFds(fd);
  if (refused.code() == absl::StatusCode::kUnimplemented) return absl::OkStatus();
  return refused;
}

absl::Status StopCredentialMessages(int fd) {
  struct Option {
    int name;
    const char* text;
  };
  for (const Option& option : {Option{SO_PASSCRED, "SO_PASSCRED"},
                               Option{SO_PASSSEC, "SO_PASSSEC"},
                               Option{SO_PASSPIDFD, "SO_PASSPIDFD"}}) {
    int off = 0;
    if (setsockopt(fd, SOL_SOCKET, option.name, &off, sizeof(off)) != 0 && errno != ENOPROTOOPT) {
      return ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", ", option.text, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> TakesFds(int fd) {
  int value = 0;
  socklen_t length = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, SO_PASSRIGHTS, &value, &length) != 0) {
    return PassRightsError(errno, "getsockopt", fd);
  }
  return value != 0;
}

}  // namespace capbroker::wire

#include "tests/bench/raw_exchange.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

namespace capbroker::bench {

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  fflush(stderr);
  _exit(2);
}

int MakeGrantFd() {
  int fd = memfd_create("board", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 4096) != 0) Die("memfd_create failed");
  return fd;
}

bool RawExchange(int fd, wire::ReceiveBuffer& buffer) {
  alignas(8) char request[kRequestBytes] = "grant board";
  iovec iov{request, sizeof(request)};
  absl::StatusOr<bool> sent = wire::SendDatagram(fd, &iov, 1, {});
  if (!sent.ok() || !*sent) return false;
  absl::StatusOr<std::optional<wire::Datagram>> got =
      wire::ReceiveDatagram(fd, buffer);
  if (!got.ok() || !got->has_value()) return false;
  return (*got)->fds.size() == 1 &&
         (*got)->words.size() * sizeof(capnp::word) == kReplyBytes;
}

bool RawReply(int fd, int grant_fd) {
  alignas(8) char reply[kReplyBytes] = "here is board";
  iovec iov{reply, sizeof(reply)};
  int fds[1] = {grant_fd};
  absl::StatusOr<bool> sent = wire::SendDatagram(fd, &iov, 1, fds);
  return sent.ok() && *sent;
}

[[noreturn]] void ServePair(int fd, int grant_fd) {
  wire::ReceiveBuffer buffer;
  for (;;) {
    absl::StatusOr<std::optional<wire::Datagram>> got =
        wire::ReceiveDatagram(fd, buffer);
    if (!got.ok() || !got->has_value()) _exit(0);
    if (grant_fd >= 0) {
      if (!RawReply(fd, grant_fd)) _exit(0);
      continue;
    }
    int ends[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) _exit(0);
    bool sent = RawReply(fd, ends[0]);
    close(ends[0]);
    close(ends[1]);
    if (!sent) _exit(0);
  }
}

}  // namespace capbroker::bench

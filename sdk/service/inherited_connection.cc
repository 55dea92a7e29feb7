#include "sdk/service/inherited_connection.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/decimal.h"
#include "sdk/base/syscall.h"

namespace capbroker {
namespace {

constexpr int kConnectionFd = 3;  // SD_LISTEN_FDS_START
constexpr char kHowToRun[] = " (run this program as `capctl connect SERVICE -- PROGRAM ...`)";

}  // namespace

absl::StatusOr<int> ParseInheritedConnection(const char* listen_fds, const char* listen_pid,
                                             pid_t pid) {
  if (listen_fds == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("LISTEN_FDS is not set", kHowToRun));
  }
  if (absl::StatusOr<uint64_t> count = ParseDecimal("LISTEN_FDS", listen_fds, 1, 1);
      !count.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(count.status().message(), kHowToRun));
  }
  if (listen_pid == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("LISTEN_PID is not set", kHowToRun));
  }
  absl::StatusOr<uint64_t> owner = ParseDecimal("LISTEN_PID", listen_pid, 1, INT_MAX);
  if (!owner.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(owner.status().message(), kHowToRun));
  }
  if (*owner != static_cast<uint64_t>(pid)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LISTEN_PID=", *owner, " is not this process (", pid,
        "): the fd was not meant for this program", kHowToRun));
  }
  return kConnectionFd;
}

absl::StatusOr<UniqueFd> TakeInheritedConnection() {
  absl::StatusOr<int> fd =
      ParseInheritedConnection(getenv("LISTEN_FDS"), getenv("LISTEN_PID"), getpid());
  for (const char* name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}) unsetenv(name);
  if (!fd.ok()) return fd.status();
  // Checked before it is owned, so that a wrong announcement never leads
  // to closing an fd this process did not get.
  int type = 0;
  socklen_t length = sizeof(type);
  if (getsockopt(*fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_SEQPACKET) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fd ", *fd, " is not a SOCK_SEQPACKET socket: not a service connection", kHowToRun));
  }
  if (fcntl(*fd, F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", *fd, ", F_SETFD)"));
  }
  return UniqueFd(*fd);
}

int RunWithInheritedConnection(absl::string_view program, int failure_exit,
                               absl::FunctionRef<int(UniqueFd)> run) {
  absl::StatusOr<UniqueFd> connection = TakeInheritedConnection();
  if (!connection.ok()) {
    std::fprintf(stderr, "%s: %s\n", std::string(program).c_str(),
                 std::string(connection.status().message()).c_str());
    return failure_exit;
  }
  return run(std::move(connection).value());
}

}  // namespace capbroker

// Telling a supervisor that the broker serves: a line on --ready-fd, and
// sd_notify("READY=1") when systemd set NOTIFY_SOCKET.
#ifndef CAPBROKER_BROKER_SERVER_READINESS_H_
#define CAPBROKER_BROKER_SERVER_READINESS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

// The lowest fd --ready-fd may name: 0, 1 and 2 are the standard streams,
// which the broker keeps (its log and, without --audit-log, its audit lines
// go to stderr). Were one of them closed after READY, the broker's next fd
// (the loop's reserve /dev/null, a client) would take its number, and every
// line written there would go astray or fail, withholding every grant.
inline constexpr int kMinReadyFd = 3;

// The fd given with --ready-fd, on which the broker says once that it serves.
//
// The number comes from the command line, so only a check shows that the
// supervisor passed it: otherwise the number is free, one of the broker's
// own fds (its lock file, a socket) takes it, and the broker would write
// READY into that fd and close it. So Claim is called before the broker opens
// any fd beyond 0 to 2, and checks with fcntl(F_GETFD), which fails with
// EBADF for a number not in use, that the fd is open, and that it was opened
// for writing. It then sets close-on-exec: services started before the
// broker is ready must not hold the supervisor's pipe open.
//
// After writing, Notify closes the fd rather than putting /dev/null over it
// (dup2): Claim has shown the number was inherited for this one purpose, so
// nothing else in the broker refers to it and it may be reused; and the
// close is what gives a supervisor that reads to end of file its answer.
class ReadyFd {
 public:
  // Takes over `fd`. kInvalidArgument below kMinReadyFd; kFailedPrecondition
  // when the fd is not open or is open read-only.
  static absl::StatusOr<ReadyFd> Claim(int fd);

  ReadyFd(ReadyFd&&) = default;
  ReadyFd& operator=(ReadyFd&&) = default;

  // Writes `line` and a newline, then closes the fd (whether or not the
  // write succeeded: it is written once). A write that fails is reported
  // with its errno; one cut short (a file at its size limit) as
  // kResourceExhausted, saying how much was written.
  absl::Status Notify(absl::string_view line);

 private:
  explicit ReadyFd(int fd) : fd_(fd) {}

  UniqueFd fd_;
};

// Sends READY=1 to $NOTIFY_SOCKET (a path, or an abstract name when it
// starts with '@') if it is set; clears the variable either way.
absl::Status NotifySystemd();

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_READINESS_H_

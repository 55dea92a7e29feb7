// capbrokerd: the capability broker daemon. See broker/daemon/flags.h and
// README.md.
#include <cstdio>
#include <string>
#include <vector>

#include "broker/daemon/daemon.h"
#include "broker/daemon/flags.h"
#include "sdk/base/syscall.h"

int main(int argc, char** argv) {
  // Before anything else creates an fd: the audit file, the signalfd, the
  // lock or a client's socket would otherwise take a closed standard fd's
  // number, and stderr's lines (audit lines too, without --audit-log) go
  // into it.
  absl::Status stdio = capbroker::EnsureStandardFds();
  if (!stdio.ok()) {
    std::fprintf(stderr, "capbrokerd: %s\n", std::string(stdio.message()).c_str());
    return 1;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<capbroker::daemon::DaemonFlags> flags =
      capbroker::daemon::ParseFlags(args);
  if (!flags.ok()) {
    std::fprintf(stderr, "capbrokerd: %s\n%s", std::string(flags.status().message()).c_str(),
                 capbroker::daemon::Usage());
    return 2;
  }
  if (flags->help) {
    std::fputs(capbroker::daemon::Usage(), stdout);
    return 0;
  }
  absl::Status status = capbroker::daemon::RunDaemon(*flags);
  if (!status.ok()) {
    std::fprintf(stderr, "capbrokerd: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

// RunDaemon's --ready-fd under socket activation: fds 3 and up are
// systemd's sockets, so the ready fd is checked against LISTEN_FDS before
// it is claimed. A LISTEN_PID or LISTEN_FDS that Listener::FromSystemd
// refuses is refused there, with its words, before fd 3 is claimed: read
// as no socket, fd 3 (systemd's socket, were the count one) was taken as
// the ready pipe. Its own process: RunDaemon blocks signals for the whole
// process.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "broker/daemon/daemon.h"
#include "broker/daemon/flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::daemon {
namespace {

using ::testing::HasSubstr;

TEST(RunDaemonTest, AMalformedListenFdsIsRefusedBeforeTheReadyFdIsClaimed) {
  // A pipe's write end at fd 3, as a supervisor passes a ready pipe; its
  // read end above, out of the way.
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(fcntl(pipe_fds[0], F_DUPFD_CLOEXEC, 10));
  UniqueFd write_end(fcntl(pipe_fds[1], F_DUPFD_CLOEXEC, 10));
  ASSERT_TRUE(read_end.valid() && write_end.valid());
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  ASSERT_EQ(fcntl(3, F_GETFD), -1) << "fd 3 is in use";
  ASSERT_EQ(dup3(write_end.get(), 3, O_CLOEXEC), 3);
  write_end.reset();

  ASSERT_EQ(setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1), 0);
  for (const char* malformed : {"x", "+1"}) {
    ASSERT_EQ(setenv("LISTEN_FDS", malformed, 1), 0);
    DaemonFlags flags;
    flags.policy_path = "/nonexistent/policy.cb";  // never read
    flags.ready_fd = 3;
    EXPECT_THAT(RunDaemon(flags),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("LISTEN_FDS wants a decimal number from 0 to ")))
        << malformed;
    // Not claimed: a claimed fd is the broker's, closed on the way out.
    EXPECT_NE(fcntl(3, F_GETFD), -1) << malformed;
  }
  ASSERT_EQ(close(3), 0);
  char byte;
  EXPECT_EQ(read(read_end.get(), &byte, 1), 0) << "something was written to the ready fd";
}

}  // namespace
}  // namespace capbroker::daemon

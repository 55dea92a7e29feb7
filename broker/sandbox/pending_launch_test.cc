#include "broker/sandbox/pending_launch.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::sandbox {
namespace {

// A child that was never let go (its Release failed: no byte on the sync
// pipe) never reached execve, though it still bears the broker's name (it
// had not named itself kSetupName yet): abandoned, it did not run.
TEST(ChildLaunchTest, AChildNeverLetGoDidNotRun) {
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    pause();
    _exit(0);
  }
  const pid_t pid = child.pid;
  LaunchParts parts;
  parts.child = std::move(child);
  parts.failure = absl::PermissionDeniedError("write(/proc/PID/uid_map): Operation not permitted");
  parts.released = false;
  ChildLaunch launch(Outcome(Protections()), std::move(parts));
  AbandonedChild abandoned = launch.Abandon();
  EXPECT_FALSE(abandoned.may_have_run);
  pollfd p{abandoned.pidfd.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, -1), 1);
  EXPECT_EQ(waitpid(pid, nullptr, 0), pid);
}

}  // namespace
}  // namespace capbroker::sandbox

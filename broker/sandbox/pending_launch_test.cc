#include "broker/sandbox/pending_launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/no_new_fds.h"

namespace capbroker::sandbox {
namespace {

// A child that was never let go (its Release failed: no byte on the sync
// pipe) never reached execve: abandoned, it did not run, even under a name
// other than kSetupName (here, its test's own).
TEST(ChildLaunchTest, AChildNeverLetGoDidNotRun) {
  int named[2];
  ASSERT_EQ(pipe2(named, O_CLOEXEC), 0);
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    if (prctl(PR_SET_NAME, "pending_launch") != 0) _exit(1);
    close(named[1]);
    pause();
    _exit(0);
  }
  close(named[1]);
  char byte;
  ASSERT_EQ(read(named[0], &byte, 1), 0);  // renamed
  close(named[0]);
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

// A child let go that died before execve (SIGKILL: the OOM killer, an
// administrator's kill) while the broker is at its fd limit: the launch
// says it died before execve, and abandoned it did not run its program, so
// that its start grants go on record as not delivered. Both must come from
// the same reading: a launch that says "died before execve" and then
// counts its grants delivered contradicts itself.
TEST(ChildLaunchTest, AChildThatDiedBeforeExecveDidNotRunThoughTheBrokerIsAtItsFdLimit) {
  int report[2];
  ASSERT_EQ(pipe2(report, O_CLOEXEC | O_NONBLOCK), 0);
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    syscall(SYS_kill, getpid(), SIGKILL);
    _exit(1);
  }
  close(report[1]);
  const pid_t pid = child.pid;
  LaunchParts parts;
  ASSERT_OK_AND_ASSIGN(parts.name, OpenName(pid));  // as StartLaunch does, before the death
  pollfd dead{child.pidfd.get(), POLLIN, 0};
  ASSERT_EQ(poll(&dead, 1, -1), 1);
  parts.child = std::move(child);
  parts.report = UniqueFd(report[0]);
  parts.released = true;
  ChildLaunch launch(Outcome(Protections()), std::move(parts));
  absl::StatusOr<std::optional<LaunchedProcess>> continued;
  AbandonedChild abandoned;
  {
    testing::NoNewFds no_new_fds;
    continued = launch.Continue();
    abandoned = launch.Abandon();
  }
  EXPECT_THAT(continued.status(), StatusIs(absl::StatusCode::kUnavailable,
                                           "the child died before execve (killed by SIGKILL)"));
  EXPECT_FALSE(abandoned.may_have_run);
  EXPECT_EQ(waitpid(pid, nullptr, 0), pid);
}

}  // namespace
}  // namespace capbroker::sandbox

// ChildGate between this test's process (as the main process) and a child
// it forks. The child's side runs in the child and says how it went in its
// exit code.
#include "sdk/service/child_gate.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/syscall_filter.h"

namespace capbroker {
namespace {

using ::capbroker::testing::ExitCodeInChild;
using ::capbroker::testing::OpenFdTargets;
using ::capbroker::testing::SyscallFilter;

// A child that is still waiting at the gate this long after it began has
// waited for ever, as far as the test goes: SIGALRM ends it (a safety net
// that turns a hang into a failure; no test waits for it).
constexpr unsigned int kHangSeconds = 30;

// Exit codes of the child's side.
constexpr int kSetUp = 0;
constexpr int kSetUpFailed = 2;
constexpr int kOpenFailed = 3;
constexpr int kNoFilter = 4;

// Forks a child that, with `before` run first (a filter, say; false: exit
// kNoFilter), sets itself up through `gate` keeping `keep`, waits at the
// gate, then runs `after` (if any) and exits with kSetUp, kSetUpFailed or
// kOpenFailed.
pid_t ForkChild(ChildGate& gate, std::vector<int> keep, absl::FunctionRef<bool()> before,
                absl::FunctionRef<void()> after) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  alarm(kHangSeconds);
  if (!before()) _exit(kNoFilter);
  const bool set_up = gate.SetUpChild(parent, std::move(keep)).ok();
  const bool opened = gate.AwaitOpen().ok();
  after();
  _exit(!set_up ? kSetUpFailed : !opened ? kOpenFailed : kSetUp);
}

// How child `pid` ended: its exit code, or 128 + the signal that ended it.
int Ended(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A filter that makes system call `nr` fail with `errnum` when its argument
// `arg` is `value`.
bool Fail(int nr, int arg, uint32_t value, int errnum) {
  return SyscallFilter(nr, arg, value, SECCOMP_RET_ERRNO | static_cast<uint32_t>(errnum))
             .Install(false) == 0;
}

// Expects `set_up` (AwaitChildSetUp's) to be an error that says it killed
// child `pid`, containing `why`, and the child to be reaped already.
void ExpectKilledAndReaped(const absl::Status& set_up, pid_t pid, absl::string_view why) {
  EXPECT_FALSE(set_up.ok());
  EXPECT_THAT(std::string(set_up.message()), ::testing::HasSubstr(why)) << set_up;
  EXPECT_THAT(std::string(set_up.message()), ::testing::HasSubstr("killed")) << set_up;
  int status = 0;
  const pid_t waited = waitpid(pid, &status, WNOHANG);
  const int wait_errno = errno;
  EXPECT_EQ(waited, -1) << "the child was not reaped";
  if (waited == -1) {
    EXPECT_EQ(wait_errno, ECHILD);
  }
  if (waited == 0) {
    kill(pid, SIGKILL);
    Ended(pid);
  }
}

TEST(ChildGateTest, TheMainProcessGoesOnOnlyOnceTheChildHoldsNothingButItsKeepSet) {
  int hold[2] = {-1, -1};
  ASSERT_EQ(pipe2(hold, O_CLOEXEC), 0);
  UniqueFd hold_read(hold[0]);
  UniqueFd hold_write(hold[1]);
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  const pid_t pid = ForkChild(gate, {hold_read.get()}, [] { return true; }, [] {});
  ASSERT_GT(pid, 0);
  ASSERT_OK(gate.AwaitChildSetUp(pid));
  // 0, 1, 2, its keep-set and its end of the gate: the end of the set-up
  // pipe is closed before this process goes on, not after.
  std::map<int, std::string> held = OpenFdTargets(pid);
  std::multiset<std::string> kinds;
  for (const auto& [fd, target] : held) {
    if (fd > 2) kinds.insert(target.substr(0, target.find('[')));
  }
  EXPECT_EQ(kinds, (std::multiset<std::string>{"pipe:", "pipe:"}));
  EXPECT_EQ(held.count(hold_read.get()), 1u);
  gate.Open();
  EXPECT_EQ(Ended(pid), kSetUp);
}

// A child that cannot send its report (its writes fail, as a write can
// under memory pressure) is taken as not set up: killed and reaped, not
// waited for for ever, not let on.
TEST(ChildGateTest, AChildThatCannotReportIsKilledAndReaped) {
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  const pid_t pid = ForkChild(
      gate, {},
      [] {
        return Fail(SYS_write, 2, 1, ENOBUFS) && Fail(SYS_sendto, 2, 1, ENOBUFS);
      },
      [] {});
  ASSERT_GT(pid, 0);
  ExpectKilledAndReaped(gate.AwaitChildSetUp(pid), pid, "said nothing of its setup");
}

// A setup that fails (close_range refused) is reported, and the child
// killed and reaped.
TEST(ChildGateTest, AChildWhoseSetUpFailsIsKilledAndReaped) {
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  const pid_t pid = ForkChild(
      gate, {}, [] { return Fail(SYS_close_range, 2, 0, ENOMEM); }, [] {});
  ASSERT_GT(pid, 0);
  ExpectKilledAndReaped(gate.AwaitChildSetUp(pid), pid, "failed to set itself up: close_range");
}

// A prctl refused (a filter that refuses PR_SET_PDEATHSIG) is a failed
// setup: the main process does not go on with that child.
TEST(ChildGateTest, AChildWhosePrctlIsRefusedIsKilledAndReaped) {
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  const pid_t pid = ForkChild(
      gate, {}, [] { return Fail(SYS_prctl, 0, PR_SET_PDEATHSIG, EPERM); }, [] {});
  ASSERT_GT(pid, 0);
  ExpectKilledAndReaped(gate.AwaitChildSetUp(pid), pid,
                        "failed to set itself up: prctl(PR_SET_PDEATHSIG, SIGKILL): Operation "
                        "not permitted");
}

// And such a child has closed what it inherited all the same, before it
// reports: a refused prctl does not leave it holding copies.
TEST(ChildGateTest, AChildWhosePrctlIsRefusedStillClosesWhatItInherited) {
  EXPECT_EQ(ExitCodeInChild([] {
              int hold[2] = {-1, -1};
              if (pipe2(hold, O_CLOEXEC) != 0) return 10;
              if (!Fail(SYS_prctl, 0, PR_SET_PDEATHSIG, EPERM)) return 11;
              // No main process reads this gate: the report's write then
              // fails (EPIPE) rather than end this process.
              if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) return 15;
              absl::StatusOr<ChildGate> gate = ChildGate::Create();
              if (!gate.ok()) return 12;
              absl::Status set_up = gate->SetUpChild(getppid(), {});
              if (set_up.ok() ||
                  set_up.message().find("PR_SET_PDEATHSIG") == absl::string_view::npos) {
                return 13;
              }
              for (int fd : hold) {
                if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) return 14;
              }
              return 0;
            }),
            0);
}

// When the main process cannot read the gate, it cannot tell whether the
// child has shed what it inherited: it kills and reaps the child before it
// goes on. The read is made to fail by putting a directory (read: EISDIR)
// in place of every fd the gate holds in this process, after the fork.
TEST(ChildGateTest, AChildThatCannotBeWaitedForIsKilledAndReaped) {
  int hold[2] = {-1, -1};
  ASSERT_EQ(pipe2(hold, O_CLOEXEC), 0);
  UniqueFd hold_read(hold[0]);
  UniqueFd hold_write(hold[1]);
  std::map<int, std::string> before = OpenFdTargets();
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  std::vector<int> gate_fds;
  for (const auto& [fd, target] : OpenFdTargets()) {
    if (before.count(fd) == 0) gate_fds.push_back(fd);
  }
  ASSERT_EQ(gate_fds.size(), 4u);
  // Once past the gate, the child waits on `hold`, which nothing writes:
  // only a kill ends it.
  const int hold_fd = hold_read.get();
  const pid_t pid = ForkChild(gate, {hold_fd}, [] { return true; }, [hold_fd] {
    char byte = 0;
    while (read(hold_fd, &byte, 1) < 0 && errno == EINTR) {
    }
  });
  ASSERT_GT(pid, 0);
  UniqueFd directory(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(directory.valid());
  for (int fd : gate_fds) ASSERT_EQ(dup3(directory.get(), fd, O_CLOEXEC), fd);
  ExpectKilledAndReaped(gate.AwaitChildSetUp(pid), pid, "cannot wait for child");
}

// A gate needs no socket: under a filter that refuses socketpair (as a
// service's does when restrictAddressFamilies leaves unix out), a child
// still starts through one.
TEST(ChildGateTest, WorksUnderAFilterThatRefusesUnixSockets) {
  EXPECT_EQ(ExitCodeInChild([] {
              if (!Fail(SYS_socketpair, 0, AF_UNIX, EAFNOSUPPORT) ||
                  !Fail(SYS_socket, 0, AF_UNIX, EAFNOSUPPORT)) {
                return 10;
              }
              absl::StatusOr<ChildGate> gate = ChildGate::Create();
              if (!gate.ok()) return 11;
              const pid_t pid = ForkChild(*gate, {}, [] { return true; }, [] {});
              if (pid < 0) return 12;
              if (!gate->AwaitChildSetUp(pid).ok()) return 13;
              gate->Open();
              return Ended(pid) == kSetUp ? 0 : 14;
            }),
            0);
}

}  // namespace
}  // namespace capbroker

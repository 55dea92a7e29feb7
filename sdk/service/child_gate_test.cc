// ChildGate between this test's process (as the main process) and a child
// it forks. The child's side runs in the child and says how it went in its
// exit code.
#include "sdk/service/child_gate.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <signal.h>
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

// A child that cannot send anything (its writes fail, as a send can under
// memory pressure) still lets the main process go on, and then waits at the
// gate until it opens. With a byte to send that failed, both waited for
// ever (SIGALRM would end the child: 128 + 14).
TEST(ChildGateTest, AChildThatCannotWriteLeavesNoWaitForEver) {
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  const pid_t pid = ForkChild(
      gate, {},
      [] {
        return Fail(SYS_write, 2, 1, ENOBUFS) && Fail(SYS_sendto, 2, 1, ENOBUFS);
      },
      [] {});
  ASSERT_GT(pid, 0);
  ASSERT_OK(gate.AwaitChildSetUp(pid));
  gate.Open();
  EXPECT_EQ(Ended(pid), kSetUp);
}

// A setup that fails (close_range refused) still lets the main process go
// on, and the child still waits at the gate and says so after.
TEST(ChildGateTest, AChildWhoseSetUpFailsLeavesNoWaitForEver) {
  ASSERT_OK_AND_ASSIGN(ChildGate gate, ChildGate::Create());
  const pid_t pid = ForkChild(
      gate, {}, [] { return Fail(SYS_close_range, 2, 0, ENOMEM); }, [] {});
  ASSERT_GT(pid, 0);
  ASSERT_OK(gate.AwaitChildSetUp(pid));
  gate.Open();
  EXPECT_EQ(Ended(pid), kSetUpFailed);
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
  absl::Status set_up = gate.AwaitChildSetUp(pid);
  EXPECT_FALSE(set_up.ok());
  EXPECT_THAT(std::string(set_up.message()), ::testing::HasSubstr("killed")) << set_up;
  // Reaped already: no child of this process any more.
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

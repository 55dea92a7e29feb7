#include "broker/sandbox/namespaces.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::ReadWholeFile;
using ::testing::HasSubstr;

TEST(NamespacesTest, FlagNames) {
  EXPECT_EQ(CloneFlagNames(CLONE_NEWNET), "CLONE_NEWNET");
  EXPECT_EQ(CloneFlagNames(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID),
            "CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID");
  EXPECT_EQ(CloneFlagNames(0), "0");
  EXPECT_EQ(NamespaceDescription(CLONE_NEWNET), "a network namespace");
  EXPECT_EQ(NamespaceDescription(CLONE_NEWUSER), "a user namespace");
}

TEST(NamespacesTest, ChildIsPidOneOfItsNamespace) {
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(CLONE_NEWUSER | CLONE_NEWPID, -1));
  if (child.pid == 0) _exit(getpid() == 1 ? 7 : 1);
  EXPECT_TRUE(child.pidfd.valid());
  EXPECT_NE(fcntl(child.pidfd.get(), F_GETFD) & FD_CLOEXEC, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child.pid, &status, 0), child.pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(NamespacesTest, IdMapsMapTheSameNumbers) {
  int go[2];
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(CLONE_NEWUSER, -1));
  if (child.pid == 0) {
    close(go[1]);
    char byte;
    _exit(read(go[0], &byte, 1) == 1 ? 0 : 1);
  }
  close(go[0]);
  EXPECT_OK(WriteIdMaps(child.pid, 1234, 5678, /*deny_setgroups=*/true));
  std::string proc = "/proc/" + std::to_string(child.pid);
  EXPECT_THAT(ReadWholeFile(proc + "/uid_map"), HasSubstr("1234       1234          1"));
  EXPECT_THAT(ReadWholeFile(proc + "/gid_map"), HasSubstr("5678       5678          1"));
  EXPECT_EQ(ReadWholeFile(proc + "/setgroups"), "deny\n");
  // Written once: a second map is refused, and the error names the file.
  EXPECT_THAT(WriteIdMaps(child.pid, 1, 1, false),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("uid_map")));
  ASSERT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
  int status = 0;
  ASSERT_EQ(waitpid(child.pid, &status, 0), child.pid);
  EXPECT_EQ(status, 0);
}

TEST(NamespacesTest, ProbeNamesTheNamespace) {
  EXPECT_OK(ProbeNamespace(CLONE_NEWNET, CLONE_NEWUSER));
  // An invalid combination: the message names the flag probed.
  absl::Status invalid = ProbeNamespace(CLONE_NEWUSER, CLONE_FS);
  EXPECT_THAT(invalid,
              StatusIs(absl::StatusCode::kInvalidArgument, "clone3(CLONE_NEWUSER): Invalid argument"));
  // EINVAL is what a kernel without the namespace kind says; an error that
  // did not come from clone3 says nothing.
  EXPECT_TRUE(NamespaceRefused(invalid));
  EXPECT_FALSE(NamespaceRefused(absl::PermissionDeniedError("clone3(CLONE_NEWUSER): made up")));
  EXPECT_TRUE(waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD);
}

// A child as StartLaunch makes it: named kSetupName (by CloneProcess), holding the write end of a
// close-on-exec pipe; it then runs `then`. Returns once the pipe reached end
// of file (execve or a death closed it), as the launch's report does.
CloneResult StartAndWaitForEndOfFile(void (*then)()) {
  int pipe_fds[2];
  EXPECT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  absl::StatusOr<CloneResult> child = CloneProcess(0, -1);
  EXPECT_OK(child.status());
  if (!child.ok()) return CloneResult();
  if (child->pid == 0) {
    close(pipe_fds[0]);
    then();
    _exit(1);
  }
  close(pipe_fds[1]);
  char byte;
  EXPECT_EQ(read(pipe_fds[0], &byte, 1), 0);
  close(pipe_fds[0]);
  return std::move(*child);
}

// Kill, then the blocking wait a test may make (the broker never does).
void KillAndWait(const CloneResult& child) {
  Kill(child);
  EXPECT_EQ(waitpid(child.pid, nullptr, 0), child.pid);
}

void WaitExited(const CloneResult& child) {
  pollfd p{child.pidfd.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, -1), 1);
}

TEST(CheckReachedExecveTest, AChildKilledBeforeExecveDiedBeforeIt) {
  CloneResult child = StartAndWaitForEndOfFile([] { syscall(SYS_kill, getpid(), SIGKILL); });
  EXPECT_THAT(CheckReachedExecve(child, 10000),
              StatusIs(absl::StatusCode::kUnavailable,
                       "the child died before execve (killed by SIGKILL)"));
  KillAndWait(child);
}

// While one lives, this process can open no fd (EMFILE), as a broker at
// its fd limit: RLIMIT_NOFILE is its lowest free fd number, so the fds it
// has stay usable (0 would also fail poll(2), whose nfds may not exceed it).
class NoNewFds {
 public:
  NoNewFds() {
    EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0);
    const int lowest_free = open("/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_GE(lowest_free, 0);
    close(lowest_free);
    rlimit at_limit = saved_;
    at_limit.rlim_cur = static_cast<rlim_t>(lowest_free);
    EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &at_limit), 0);
  }
  ~NoNewFds() { EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &saved_), 0); }
  NoNewFds(const NoNewFds&) = delete;
  NoNewFds& operator=(const NoNewFds&) = delete;

 private:
  rlimit saved_{};
};

// A child that died before execve while the broker is at its fd limit, so
// that its name cannot be opened: /proc/PID/exe, which needs no fd, tells
// (its start grants were not delivered).
TEST(CheckReachedExecveTest, AChildKilledBeforeExecveDiedBeforeItThoughItsNameCannotBeOpened) {
  CloneResult child = StartAndWaitForEndOfFile([] { syscall(SYS_kill, getpid(), SIGKILL); });
  WaitExited(child);
  absl::Status checked;
  {
    NoNewFds no_new_fds;
    ASSERT_TRUE(open("/proc/self/comm", O_RDONLY | O_CLOEXEC) < 0 && errno == EMFILE);
    checked = CheckReachedExecve(child, 10000);
  }
  EXPECT_THAT(checked, StatusIs(absl::StatusCode::kUnavailable,
                                "the child died before execve (killed by SIGKILL)"));
  KillAndWait(child);
}

// The same limit leaves a program that ran taken for one.
TEST(CheckReachedExecveTest, ARunningProgramRanThoughItsNameCannotBeOpened) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("60"), nullptr};
    execve(argv[0], argv, environ);
  });
  absl::Status checked;
  {
    NoNewFds no_new_fds;
    checked = CheckReachedExecve(child, 10000);
  }
  EXPECT_OK(checked);
  KillAndWait(child);
}

TEST(CheckReachedExecveTest, AProgramThatExitedAtOnceRan) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    char* argv[] = {const_cast<char*>("/bin/false"), nullptr};
    execve(argv[0], argv, environ);
  });
  WaitExited(child);  // dead like the child above, but renamed by execve
  EXPECT_OK(CheckReachedExecve(child, 10000));
  KillAndWait(child);
}

TEST(CheckReachedExecveTest, ARunningProgramRan) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("60"), nullptr};
    execve(argv[0], argv, environ);
  });
  EXPECT_OK(CheckReachedExecve(child, 10000));
  KillAndWait(child);
}

// The launch reads /proc/PID/comm of a child that may be running the
// service's program, which may take a file lease on it (the file is its
// own) and ignore the lease break: the broker's only thread must not wait
// for the kernel to break it (fs.lease-break-time, 45 s by default).
TEST(CheckReachedExecveTest, ALeaseOnTheChildsNameDoesNotBlock) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    signal(SIGIO, SIG_IGN);
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) != 0) _exit(2);
    // Keep the leased file (on fd 0) and close the rest: the report pipe
    // reaches end of file, as at execve.
    if (dup2(fd, 0) != 0 || syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  // An open that does not wait shows the lease.
  std::string comm = "/proc/" + std::to_string(child.pid) + "/comm";
  int probe = open(comm.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  bool leased = probe < 0 && errno == EWOULDBLOCK;
  if (probe >= 0) close(probe);
  if (!leased) {
    KillAndWait(child);
    GTEST_SKIP() << "the child could not take a lease on " << comm << " here";
  }
  auto checked = std::async(std::launch::async, [&] { return CheckReachedExecve(child, 10000); });
  // A safety deadline, far below the kernel's 45 s.
  if (checked.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    KillAndWait(child);  // ends the lease, so the blocked open goes on
    checked.wait();
    FAIL() << "reading the child's name waited on its lease";
  }
  // The child is alive and holds its pipe no more, and its name cannot be
  // read: /proc/PID/exe, which resolves while it lives, takes it for a
  // program that ran.
  EXPECT_OK(checked.get());
  KillAndWait(child);
}

// MayHaveRunProgram of `child` once it is dead after its SIGKILL (a zombie,
// its name still readable); reaps it after.
bool MayHaveRunOnceKilled(const CloneResult& child) {
  Kill(child);
  WaitExited(child);
  bool may_have_run = MayHaveRunProgram(child.pid);
  EXPECT_EQ(waitpid(child.pid, nullptr, 0), child.pid);
  return may_have_run;
}

// A child killed in its setup never ran its program, however it died: its
// name says so, alive or dead.
TEST(MayHaveRunProgramTest, AChildKilledInItsSetupDidNot) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  Kill(child);
  EXPECT_FALSE(MayHaveRunProgram(child.pid));
  EXPECT_FALSE(MayHaveRunOnceKilled(child));
}

// Once it is dead, nothing but its name can tell: one that cannot be read
// (the broker at its fd limit) counts as a program that may have run.
TEST(MayHaveRunProgramTest, AChildWhoseNameCannotBeOpenedMayHave) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  Kill(child);
  WaitExited(child);
  bool may_have_run = false;
  {
    NoNewFds no_new_fds;
    may_have_run = MayHaveRunProgram(child.pid);
  }
  EXPECT_TRUE(may_have_run);
  EXPECT_EQ(waitpid(child.pid, nullptr, 0), child.pid);
}

TEST(MayHaveRunProgramTest, AProgramKilledAsItRunsDid) {
  CloneResult child = StartAndWaitForEndOfFile([] {
    char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("60"), nullptr};
    execve(argv[0], argv, environ);
  });
  EXPECT_TRUE(MayHaveRunOnceKilled(child));
}

std::string OwnName() {
  char name[16] = {};
  EXPECT_EQ(prctl(PR_GET_NAME, name), 0);
  return name;
}

// As seen in CI: a launch given up at once killed a child that had not been
// scheduled yet. It still bore the broker's name, passed for a program that
// ran, and its grants went on record as delivered. A child bears kSetupName
// before it runs an instruction of its own; the caller keeps its name.
TEST(MayHaveRunProgramTest, AChildKilledBeforeItRanAnythingDidNot) {
  const std::string before = OwnName();
  ASSERT_NE(before, kSetupName);
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    pause();
    _exit(0);
  }
  EXPECT_EQ(OwnName(), before);
  EXPECT_FALSE(MayHaveRunOnceKilled(child));
}

TEST(NamespacesTest, KillKillsWithoutReaping) {
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    pause();
    _exit(0);
  }
  Kill(child);
  WaitExited(child);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, child.pid, &info, WEXITED | WNOHANG), 0);
  EXPECT_EQ(info.si_pid, child.pid);
  EXPECT_EQ(DescribeExit(info), "killed by SIGKILL");
}

}  // namespace
}  // namespace capbroker::sandbox

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

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/no_new_fds.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::NoNewFds;
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

// A child as StartLaunch makes it, with the parent's hold on it.
struct SetupChild {
  CloneResult child;
  UniqueFd name;  // OpenName's
};

// A child as StartLaunch makes it: named kSetupName (by CloneProcess), its
// name opened before it is let go, holding the write end of a close-on-exec
// pipe; let go, it runs `then`. Returns once the pipe reached end of file
// (execve or a death closed it), as the launch's report does.
SetupChild StartAndWaitForEndOfFile(void (*then)()) {
  int pipe_fds[2], go[2];
  EXPECT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(go, O_CLOEXEC), 0);
  absl::StatusOr<CloneResult> child = CloneProcess(0, -1);
  EXPECT_OK(child.status());
  if (!child.ok()) return SetupChild();
  if (child->pid == 0) {
    close(pipe_fds[0]);
    close(go[1]);
    char byte;
    if (read(go[0], &byte, 1) != 1) _exit(1);
    close(go[0]);
    then();
    _exit(1);
  }
  close(pipe_fds[1]);
  close(go[0]);
  absl::StatusOr<UniqueFd> name = OpenName(child->pid);
  EXPECT_OK(name.status());
  EXPECT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
  char byte;
  EXPECT_EQ(read(pipe_fds[0], &byte, 1), 0);
  close(pipe_fds[0]);
  return SetupChild{std::move(*child), name.ok() ? std::move(*name) : UniqueFd()};
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

void ExecSleep() {
  char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("60"), nullptr};
  execve(argv[0], argv, environ);
}

void ExecFalse() {
  char* argv[] = {const_cast<char*>("/bin/false"), nullptr};
  execve(argv[0], argv, environ);
}

void KillSelf() { syscall(SYS_kill, getpid(), SIGKILL); }

TEST(OpenNameTest, TheNameIsHeldCloseOnExec) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecSleep);
  ASSERT_TRUE(setup.name.valid());
  EXPECT_NE(fcntl(setup.name.get(), F_GETFD) & FD_CLOEXEC, 0);
  KillAndWait(setup.child);
}

TEST(OpenNameTest, AtTheFdLimitTheErrorSaysSo) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecSleep);
  absl::StatusOr<UniqueFd> name;
  {
    NoNewFds no_new_fds;
    name = OpenName(setup.child.pid);
  }
  EXPECT_THAT(name.status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("cannot hold the child's name open, by which the launch "
                                    "tells whether it reached execve: open(/proc/",
                                    setup.child.pid, "/comm): Too many open files (the broker "
                                    "is at its fd limit, RLIMIT_NOFILE)")));
  KillAndWait(setup.child);
}

// A process that does not bear kSetupName (here, the test's own) is no
// child fresh from CloneProcess: what its name says later would prove
// nothing.
TEST(OpenNameTest, ANameOtherThanTheSetupNameIsRefused) {
  EXPECT_THAT(OpenName(getpid()).status(),
              StatusIs(absl::StatusCode::kInternal,
                       absl::StrCat("/proc/", getpid(), "/comm does not read ", kSetupName,
                                    ", the name a new child bears until execve")));
}

TEST(CheckReachedExecveTest, AChildKilledBeforeExecveDiedBeforeIt) {
  SetupChild setup = StartAndWaitForEndOfFile(KillSelf);
  EXPECT_THAT(CheckReachedExecve(setup.child, setup.name.get(), 10000),
              StatusIs(absl::StatusCode::kUnavailable,
                       "the child died before execve (killed by SIGKILL)"));
  KillAndWait(setup.child);
}

// CheckReachedExecve of `setup`'s child at the broker's fd limit, where no
// new fd can be opened.
absl::Status CheckedAtTheFdLimit(const SetupChild& setup) {
  NoNewFds no_new_fds;
  EXPECT_TRUE(open("/proc/self/comm", O_RDONLY | O_CLOEXEC) < 0 && errno == EMFILE)
      << "a new fd could still be opened";
  return CheckReachedExecve(setup.child, setup.name.get(), 10000);
}

// The check at the broker's fd limit: its name, held from the clone, still
// tells. A child that died before execve (its start grants were not
// delivered) ...
TEST(CheckReachedExecveTest, AChildKilledBeforeExecveDiedBeforeItAtTheFdLimit) {
  SetupChild setup = StartAndWaitForEndOfFile(KillSelf);
  WaitExited(setup.child);
  EXPECT_THAT(CheckedAtTheFdLimit(setup), StatusIs(absl::StatusCode::kUnavailable,
                                "the child died before execve (killed by SIGKILL)"));
  KillAndWait(setup.child);
}

// ... a program that runs ...
TEST(CheckReachedExecveTest, ARunningProgramRanAtTheFdLimit) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecSleep);
  EXPECT_OK(CheckedAtTheFdLimit(setup));
  KillAndWait(setup.child);
}

// ... and one that exited at once, whose /proc/PID/exe is gone as a dying
// child's is: it was once taken for a child that died before execve.
TEST(CheckReachedExecveTest, AProgramThatExitedAtOnceRanAtTheFdLimit) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecFalse);
  WaitExited(setup.child);
  EXPECT_OK(CheckedAtTheFdLimit(setup));
  KillAndWait(setup.child);
}

TEST(CheckReachedExecveTest, AProgramThatExitedAtOnceRan) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecFalse);
  WaitExited(setup.child);  // dead like the child above, but renamed by execve
  EXPECT_OK(CheckReachedExecve(setup.child, setup.name.get(), 10000));
  KillAndWait(setup.child);
}

TEST(CheckReachedExecveTest, ARunningProgramRan) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecSleep);
  EXPECT_OK(CheckReachedExecve(setup.child, setup.name.get(), 10000));
  KillAndWait(setup.child);
}

// Runs `call` on another thread; false (and a test failure) when it has not
// returned in 10 s, a safety deadline far below the 45 s (by default,
// fs.lease-break-time) an open waits for a lease to be broken; the child's
// death, by `kill`, then ends the lease so that the call can return.
template <typename Call>
bool ReturnsWithoutWaitingOnALease(const CloneResult& child, Call call) {
  auto done = std::async(std::launch::async, call);
  if (done.wait_for(std::chrono::seconds(10)) == std::future_status::ready) return true;
  KillAndWait(child);
  done.wait();
  ADD_FAILURE() << "the call waited on the lease of the child's name";
  return false;
}

// A process of the child's uid may take a file lease on its name and ignore
// the lease break. The broker opens the name only before the child is let
// go, but even then the open must fail at once rather than wait for the
// kernel to break the lease: the broker's only thread would wait with it.
TEST(OpenNameTest, ALeaseOnTheNameFailsTheOpenAtOnce) {
  int leased[2];
  ASSERT_EQ(pipe2(leased, O_CLOEXEC), 0);
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    close(leased[0]);
    signal(SIGIO, SIG_IGN);
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    const char taken = fd >= 0 && fcntl(fd, F_SETLEASE, F_WRLCK) == 0 ? 1 : 0;
    if (write(leased[1], &taken, 1) != 1) _exit(2);
    pause();
    _exit(0);
  }
  close(leased[1]);
  char taken = 0;
  ASSERT_EQ(read(leased[0], &taken, 1), 1);
  close(leased[0]);
  if (!taken) {
    KillAndWait(child);
    GTEST_SKIP() << "the child could not take a lease on its name here";
  }
  absl::Status opened;
  ASSERT_TRUE(ReturnsWithoutWaitingOnALease(
      child, [&] { opened = OpenName(child.pid).status(); }));
  EXPECT_THAT(opened, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("Resource temporarily unavailable")));
  KillAndWait(child);
}

// Once the child is let go, its program may try the same. The name the
// broker holds open is read with pread, which breaks no lease (only an
// open or a truncate does); and a kernel that counts readers refuses the
// lease outright (EAGAIN), the broker's fd being open. Either way the check
// does not wait.
TEST(CheckReachedExecveTest, ALeaseOnTheChildsNameDoesNotBlock) {
  SetupChild setup = StartAndWaitForEndOfFile([] {
    signal(SIGIO, SIG_IGN);
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) _exit(2);
    fcntl(fd, F_SETLEASE, F_WRLCK);  // refused where the broker's fd counts
    // Keep the file (on fd 0) and close the rest: the report pipe reaches
    // end of file, as at execve.
    if (dup2(fd, 0) != 0 || syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  absl::Status checked;
  ASSERT_TRUE(ReturnsWithoutWaitingOnALease(setup.child, [&] {
    checked = CheckReachedExecve(setup.child, setup.name.get(), 10000);
  }));
  // The child is alive, bears our name and holds its pipe no more:
  // /proc/PID/exe, which resolves while it lives, takes it for a program
  // that ran.
  EXPECT_OK(checked);
  KillAndWait(setup.child);
}

// MayHaveRunProgram of `setup`'s child once it is dead after its SIGKILL (a
// zombie, its name still readable); reaps it after.
bool MayHaveRunOnceKilled(const SetupChild& setup) {
  Kill(setup.child);
  WaitExited(setup.child);
  bool may_have_run = MayHaveRunProgram(setup.name.get());
  EXPECT_EQ(waitpid(setup.child.pid, nullptr, 0), setup.child.pid);
  return may_have_run;
}

// A child killed in its setup never ran its program, however it died: its
// name says so, alive or dead.
TEST(MayHaveRunProgramTest, AChildKilledInItsSetupDidNot) {
  SetupChild setup = StartAndWaitForEndOfFile([] {
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  Kill(setup.child);
  EXPECT_FALSE(MayHaveRunProgram(setup.name.get()));
  EXPECT_FALSE(MayHaveRunOnceKilled(setup));
}

// So too at the broker's fd limit: the name was held from the clone. Taken
// for a program that ran, as it once was, its start grants would be on
// record as delivered.
TEST(MayHaveRunProgramTest, AChildKilledInItsSetupDidNotAtTheFdLimit) {
  SetupChild setup = StartAndWaitForEndOfFile([] {
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  Kill(setup.child);
  WaitExited(setup.child);
  bool may_have_run = true;
  {
    NoNewFds no_new_fds;
    may_have_run = MayHaveRunProgram(setup.name.get());
  }
  EXPECT_FALSE(may_have_run);
  EXPECT_EQ(waitpid(setup.child.pid, nullptr, 0), setup.child.pid);
}

// A name that cannot be read (here: the child reaped, ESRCH; never another
// process's name) counts as a program that may have run, and proves no
// death before execve.
TEST(MayHaveRunProgramTest, AChildWhoseNameCannotBeReadMayHave) {
  SetupChild setup = StartAndWaitForEndOfFile([] {
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) _exit(3);
    pause();
  });
  KillAndWait(setup.child);
  char text[16];
  ASSERT_TRUE(pread(setup.name.get(), text, sizeof text, 0) < 0 && errno == ESRCH);
  EXPECT_TRUE(MayHaveRunProgram(setup.name.get()));
  EXPECT_OK(CheckReachedExecve(setup.child, setup.name.get(), 10000));
}

TEST(MayHaveRunProgramTest, AProgramKilledAsItRunsDid) {
  SetupChild setup = StartAndWaitForEndOfFile(ExecSleep);
  EXPECT_TRUE(MayHaveRunOnceKilled(setup));
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
  absl::StatusOr<UniqueFd> name = OpenName(child.pid);
  EXPECT_OK(name.status());
  SetupChild setup{std::move(child), name.ok() ? std::move(*name) : UniqueFd()};
  EXPECT_FALSE(MayHaveRunOnceKilled(setup));
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

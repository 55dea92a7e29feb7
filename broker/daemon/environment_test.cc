#include "broker/daemon/environment.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::daemon {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// What `check` says (CheckOwnProcfs's answer unless given) in pid 1 of a
// new pid namespace, after `prepare` (run there first; its error is
// reported instead). Run in a child, which makes the namespace (unshare
// then fork: the fork's child is its first process) and passes the answer
// back.
std::string CheckInNewPidNamespace(const std::function<std::string()>& prepare,
                                   const std::function<std::string()>& check = [] {
                                     return CheckOwnProcfs().ToString();
                                   }) {
  testing::ChildResult child = testing::RunInChild([&]() -> std::string {
    if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) return absl::StrCat("unshare: ", strerror(errno));
    testing::ChildResult first = testing::RunInChild([&]() -> std::string {
      if (getpid() != 1) return absl::StrCat("pid ", getpid(), ", not 1");
      std::string prepared = prepare();
      if (!prepared.empty()) return prepared;
      return check();
    });
    if (!WIFEXITED(first.wait_status) || WEXITSTATUS(first.wait_status) != 0) {
      return absl::StrCat("pid 1 ended with wait status ", first.wait_status);
    }
    return first.output;
  });
  if (!WIFEXITED(child.wait_status) || WEXITSTATUS(child.wait_status) != 0) {
    return absl::StrCat("the child ended with wait status ", child.wait_status);
  }
  return child.output;
}

TEST(CheckOwnProcfsTest, TheTestsOwnProcIsItsOwn) { EXPECT_OK(CheckOwnProcfs()); }

// `unshare --pid --fork capbrokerd`, without --mount-proc: /proc is the
// namespace above's, where /proc/self is the broker's pid there, not 1,
// and /proc/1 some other process.
TEST(CheckOwnProcfsTest, AnotherPidNamespacesProcIsRefusedSayingWhatToDo) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a pid namespace";
  EXPECT_THAT(CheckInNewPidNamespace([] { return std::string(); }),
              AllOf(StartsWith("FAILED_PRECONDITION: /proc is not the procfs of the broker's pid "
                               "namespace (/proc/self is '"),
                    HasSubstr("the broker's pid is 1)"),
                    HasSubstr("mount a procfs for the broker's pid namespace, e.g. unshare "
                              "--pid --fork --mount-proc")));
}

// Mounts the pid namespace's own procfs at /proc, with `options`, in the
// mount namespace of the caller's own (as --mount-proc does); its error,
// or "".
std::string MountOwnProc(const char* options) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) != 0) {
    return absl::StrCat("mount: ", strerror(errno));
  }
  return std::string();
}

// What the error advises: the namespace's own procfs at /proc passes.
TEST(CheckOwnProcfsTest, ThePidNamespacesOwnProcPasses) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a pid namespace";
  EXPECT_EQ(CheckInNewPidNamespace([] { return MountOwnProc(nullptr); }), "OK");
}

// systemd's ProcSubset=pid: the broker's own procfs, mounted subset=pid,
// has its processes but no /proc/sys. Where the user namespace maps every
// id (this test's, the initial one), the broker needs no overflow sysctl:
// both checks pass, and no one is unmapped.
TEST(ReadUnmappedPeerIdsTest, AProcWithoutSysIsEnoughWhereEveryIdIsMapped) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a pid namespace";
  absl::StatusOr<peer::UnmappedIds> here = peer::ReadUnmappedIds();
  ASSERT_TRUE(here.ok()) << here.status();
  if (here->uid || here->gid) GTEST_SKIP() << "runs in a user namespace not mapping every id";
  EXPECT_EQ(CheckInNewPidNamespace([] { return MountOwnProc("subset=pid"); },
                                   []() -> std::string {
                                     if (access("/proc/sys", F_OK) == 0) {
                                       return "/proc/sys is there";
                                     }
                                     if (absl::Status own = CheckOwnProcfs(); !own.ok()) {
                                       return own.ToString();
                                     }
                                     absl::StatusOr<peer::UnmappedIds> unmapped =
                                         ReadUnmappedPeerIds();
                                     if (!unmapped.ok()) return unmapped.status().ToString();
                                     return unmapped->uid || unmapped->gid ? "some unmapped"
                                                                           : "none unmapped";
                                   }),
            "none unmapped");
}

}  // namespace
}  // namespace capbroker::daemon

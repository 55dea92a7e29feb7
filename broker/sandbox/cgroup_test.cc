#include "broker/sandbox/cgroup.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/sandbox/namespaces.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/host_files.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::ReadWholeFile;
using ::capbroker::testing::WritableCgroup2Mount;
using ::testing::AllOf;
using ::testing::HasSubstr;

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hierarchy_ = WritableCgroup2Mount();
    if (hierarchy_.empty()) GTEST_SKIP() << "no writable cgroup v2 hierarchy here";
    parent_ = absl::StrCat(hierarchy_, "/capbroker-cgroup-test-", getpid());
    ASSERT_EQ(mkdir(parent_.c_str(), 0755), 0) << strerror(errno);
  }
  void TearDown() override {
    if (!parent_.empty()) {
      EXPECT_EQ(rmdir(parent_.c_str()), 0) << strerror(errno);
    }
  }

  std::string hierarchy_;
  std::string parent_;
};

TEST(CgroupParentTest, NotACgroupIsRefused) {
  capbroker::testing::TempDir dir;
  EXPECT_THAT(ServiceCgroup::Create(dir.path(), "leaf", 1 << 20, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is not a cgroup v2 directory")));
  EXPECT_THAT(ServiceCgroup::Create("/nonexistent", "leaf", 1 << 20, 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("statfs(/nonexistent)")));
}

// capbrokerd --cgroup DIR: checked at start, with the reason and the fix.
TEST(CheckCgroupParentTest, RefusesWhatIsNotAUsableCgroupDirectory) {
  EXPECT_THAT(CheckCgroupParent("/nonexistent"),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("--cgroup /nonexistent: no such directory"),
                             HasSubstr("echo '+memory +pids'"))));
  capbroker::testing::TempDir dir;
  EXPECT_THAT(CheckCgroupParent(dir.path()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("--cgroup ", dir.path(),
                                              ": not a cgroup v2 directory"))));
  std::string file = dir.WriteFile("f", "");
  EXPECT_THAT(CheckCgroupParent(file), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                HasSubstr("not a directory")));
}

// A cgroup v2 directory is accepted when it enables memory or pids for its
// children, and the result says which.
TEST_F(CgroupTest, CheckCgroupParentReportsTheControllers) {
  std::string controllers = ReadWholeFile(parent_ + "/cgroup.controllers");
  absl::StatusOr<CgroupParent> checked = CheckCgroupParent(parent_);
  bool memory = absl::StrContains(controllers, "memory");
  bool pids = absl::StrContains(controllers, "pids");
  if (!memory && !pids) {
    // Here (Debian's hybrid layout: memory and pids bound to cgroup v1),
    // nothing could be limited there.
    EXPECT_THAT(checked, StatusIs(absl::StatusCode::kFailedPrecondition,
                                  HasSubstr("enables neither the memory nor the pids "
                                            "controller")));
    return;
  }
  // Enabled in the parent's subtree_control only once asked for.
  std::string enable = absl::StrCat(memory ? "+memory " : "", pids ? "+pids" : "");
  EXPECT_THAT(checked, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("neither")));
  {
    int fd = open((parent_ + "/cgroup.subtree_control").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, enable.data(), enable.size()), static_cast<ssize_t>(enable.size()));
    close(fd);
  }
  ASSERT_OK_AND_ASSIGN(CgroupParent parent, CheckCgroupParent(parent_));
  EXPECT_EQ(parent.path, parent_);
  EXPECT_EQ(parent.memory, memory);
  EXPECT_EQ(parent.pids, pids);
  // The probe cgroup is gone again.
  EXPECT_NE(access(absl::StrCat(parent_, "/capbroker-probe-", getpid()).c_str(), F_OK), 0);
}

TEST_F(CgroupTest, ChildIsCreatedInsideAndTheCgroupRemovedAfter) {
  ASSERT_OK_AND_ASSIGN(ServiceCgroup cgroup, ServiceCgroup::Create(parent_, "svc", 0, 0));
  EXPECT_EQ(cgroup.path(), parent_ + "/svc");
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, cgroup.fd()));
  if (child.pid == 0) {
    pause();
    _exit(0);
  }
  std::string inside = ReadWholeFile(absl::StrCat("/proc/", child.pid, "/cgroup"));
  EXPECT_THAT(inside, HasSubstr(absl::StrCat("0::", cgroup.path().substr(hierarchy_.size()), "\n")));
  // Busy while the child is in it.
  EXPECT_THAT(ServiceCgroup::Create(parent_, "svc", 0, 0),
              StatusIs(absl::StatusCode::kAlreadyExists));
  Kill(child);
  ASSERT_EQ(waitpid(child.pid, nullptr, 0), child.pid);
  EXPECT_OK(cgroup.Remove());
  EXPECT_NE(access((parent_ + "/svc").c_str(), F_OK), 0);
}

// cgroup.kill reaches every process in the cgroup, not only the one the
// broker knows of.
TEST_F(CgroupTest, KillKillsEveryProcessInTheCgroup) {
  ASSERT_OK_AND_ASSIGN(ServiceCgroup cgroup, ServiceCgroup::Create(parent_, "killed", 0, 0));
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, cgroup.fd()));
  if (child.pid == 0) {
    if (fork() < 0) _exit(1);  // both wait to be killed
    pause();
    _exit(0);
  }
  ASSERT_OK_AND_ASSIGN(UniqueFd events, WatchCgroupEvents(cgroup.path()));
  ASSERT_OK(KillCgroup(cgroup.path()));
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, child.pid, &info, WEXITED), 0);
  EXPECT_EQ(DescribeExit(info), "killed by SIGKILL");
  // The grandchild, which nobody here waits for, empties it too: its
  // cgroup.events says so, and the cgroup can go.
  while (rmdir(cgroup.path().c_str()) != 0) {
    ASSERT_EQ(errno, EBUSY) << strerror(errno);
    pollfd changed{events.get(), POLLIN, 0};
    ASSERT_EQ(poll(&changed, 1, 10000), 1) << "the cgroup never emptied";
    DrainEvents(events.get());
  }
  EXPECT_THAT(KillCgroup(parent_ + "/nonexistent"), StatusIs(absl::StatusCode::kNotFound));
}

// A cgroup made for a launch that fails before its service runs there goes
// with it: every early return of StartLaunch drops it. As reviewed, one
// made before the launch's pipes stayed when those failed.
TEST_F(CgroupTest, ADroppedCgroupIsRemoved) {
  const std::string path = parent_ + "/dropped";
  {
    ASSERT_OK_AND_ASSIGN(ServiceCgroup cgroup, ServiceCgroup::Create(parent_, "dropped", 0, 0));
    EXPECT_EQ(access(path.c_str(), F_OK), 0);
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " was left behind";
  rmdir(path.c_str());  // so that TearDown can remove the parent either way
}

// Assigning over a cgroup drops the one it held.
TEST_F(CgroupTest, AssigningOverACgroupRemovesIt) {
  ASSERT_OK_AND_ASSIGN(ServiceCgroup cgroup, ServiceCgroup::Create(parent_, "first", 0, 0));
  ASSERT_OK_AND_ASSIGN(ServiceCgroup second, ServiceCgroup::Create(parent_, "second", 0, 0));
  cgroup = std::move(second);
  EXPECT_EQ(cgroup.path(), parent_ + "/second");
  EXPECT_NE(access((parent_ + "/first").c_str(), F_OK), 0);
  rmdir((parent_ + "/first").c_str());
}

// Handed over, it stays: its owner removes it once the service is reaped.
TEST_F(CgroupTest, AReleasedCgroupStays) {
  std::string path;
  {
    ASSERT_OK_AND_ASSIGN(ServiceCgroup cgroup, ServiceCgroup::Create(parent_, "kept", 0, 0));
    path = cgroup.Release();
    EXPECT_EQ(cgroup.path(), "");
    EXPECT_EQ(cgroup.fd(), -1);
  }
  EXPECT_EQ(path, parent_ + "/kept");
  EXPECT_EQ(rmdir(path.c_str()), 0) << strerror(errno);
}

TEST_F(CgroupTest, LimitsNeedTheirControllers) {
  std::string controllers = ReadWholeFile(parent_ + "/cgroup.controllers");
  absl::StatusOr<ServiceCgroup> cgroup = ServiceCgroup::Create(parent_, "limited", 0, 8);
  if (absl::StrContains(controllers, "pids")) {
    ASSERT_OK(cgroup.status());
    EXPECT_EQ(ReadWholeFile(cgroup->path() + "/pids.max"), "8\n");
    EXPECT_OK(cgroup->Remove());
  } else {
    EXPECT_THAT(cgroup, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("pids.max does not exist")));
    // Nothing is left behind.
    EXPECT_NE(access((parent_ + "/limited").c_str(), F_OK), 0);
  }
}

}  // namespace
}  // namespace capbroker::sandbox

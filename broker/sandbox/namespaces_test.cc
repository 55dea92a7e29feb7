#include "broker/sandbox/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

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
  EXPECT_THAT(ProbeNamespace(CLONE_NEWUSER, CLONE_FS),
              StatusIs(absl::StatusCode::kInvalidArgument, "clone3(CLONE_NEWUSER): Invalid argument"));
  EXPECT_TRUE(waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD);
}

TEST(NamespacesTest, KillAndReapLeavesNoChild) {
  ASSERT_OK_AND_ASSIGN(CloneResult child, CloneProcess(0, -1));
  if (child.pid == 0) {
    pause();
    _exit(0);
  }
  KillAndReap(child);
  EXPECT_TRUE(waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD);
}

}  // namespace
}  // namespace capbroker::sandbox

// HidePaths as the child runs it: as root with the service's fs ids, on a
// root being assembled. Each test works in a forked child with a mount
// namespace of its own, on a tmpfs mounted there (nothing reaches the host).
#include "broker/sandbox/hidden_paths.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::ChildResult;
using ::capbroker::testing::RunInChild;

constexpr uid_t kNobody = 65534;

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::StrCat("(", strerror(errno), ")");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  return static_cast<bool>(out);
}

// A fake root at a new directory of /tmp (reachable by every uid, as the
// staging root is), for `body` to run in a child: a tmpfs owned by kNobody,
// holding etc/visible (0644) and etc/priv (0700, root's) with policy.capnp
// in it. The directory is removed afterwards.
std::string WithFakeRoot(const std::function<std::string(const std::string& root)>& body) {
  char dir[] = "/tmp/capbroker-hidden-paths-XXXXXX";
  if (mkdtemp(dir) == nullptr) return absl::StrCat("mkdtemp: ", strerror(errno));
  const std::string root = dir;
  ChildResult result = RunInChild([&]() -> std::string {
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return absl::StrCat("private mount namespace: ", strerror(errno));
    }
    std::string options = absl::StrCat("mode=0755,uid=", kNobody, ",gid=", kNobody);
    if (mount("tmpfs", root.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      return absl::StrCat("mount(tmpfs): ", strerror(errno));
    }
    if (mkdir((root + "/etc").c_str(), 0755) != 0 ||
        mkdir((root + "/etc/priv").c_str(), 0700) != 0 ||
        !WriteFile(root + "/etc/priv/policy.capnp", "the policy") ||
        !WriteFile(root + "/etc/visible", "visible content") ||
        chmod((root + "/etc/visible").c_str(), 0644) != 0) {
      return absl::StrCat("fake root: ", strerror(errno));
    }
    return body(root);
  });
  rmdir(root.c_str());
  if (!WIFEXITED(result.wait_status) || WEXITSTATUS(result.wait_status) != 0) {
    return absl::StrCat("child ended with wait status ", result.wait_status, ": ",
                        result.output);
  }
  return result.output;
}

// A hidden path below a directory the service's ids cannot search (a
// policy in a root-only directory of /etc): the service cannot reach it
// either, so there is nothing to hide, and the other paths are hidden as
// usual.
TEST(HiddenPathsTest, APathTheServicesIdsCannotReachIsLeftAlone) {
  ASSERT_EQ(geteuid(), 0u) << "mounts, and switches fs ids";
  std::string result = WithFakeRoot([](const std::string& root) -> std::string {
    setfsuid(kNobody);
    if (setfsuid(-1) != static_cast<int>(kNobody)) return "setfsuid failed";
    absl::Status hidden =
        HidePaths(root, {"/etc/priv/policy.capnp", "/etc/visible"}, /*as_service=*/true);
    std::string visible = Contents(root + "/etc/visible");
    setfsuid(0);
    return absl::StrCat(hidden.ToString(), "; visible=[", visible, "]; policy=[",
                        Contents(root + "/etc/priv/policy.capnp"), "]");
  });
  EXPECT_EQ(result, "OK; visible=[]; policy=[the policy]");
}

// With other ids than the service's, a refusal says nothing of what the
// service may reach: an error, not a path left alone.
TEST(HiddenPathsTest, ARefusalToOtherIdsIsAnError) {
  ASSERT_EQ(geteuid(), 0u) << "mounts, and switches fs ids";
  std::string result = WithFakeRoot([](const std::string& root) -> std::string {
    setfsuid(kNobody);
    if (setfsuid(-1) != static_cast<int>(kNobody)) return "setfsuid failed";
    return HidePaths(root, {"/etc/priv/policy.capnp"}, /*as_service=*/false).ToString();
  });
  EXPECT_EQ(result,
            "PERMISSION_DENIED: openat2(/etc/priv/policy.capnp, RESOLVE_IN_ROOT): "
            "Permission denied");
}

}  // namespace
}  // namespace capbroker::sandbox

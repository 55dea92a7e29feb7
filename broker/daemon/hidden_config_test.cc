#include "broker/daemon/hidden_config.h"

#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::daemon {
namespace {

using ::capbroker::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(HiddenConfigTest, PolicyIsHiddenByItsCanonicalPath) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", "()");
  ASSERT_EQ(symlink(dir.path().c_str(), dir.Join("link").c_str()), 0);
  char* real_dir = realpath(dir.path().c_str(), nullptr);
  ASSERT_NE(real_dir, nullptr);
  std::string expected = std::string(real_dir) + "/policy.capnp";
  free(real_dir);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> paths,
                       ConfigPathsToHide(dir.Join("link/./policy.capnp")));
  EXPECT_THAT(paths, ElementsAre("/etc/capbroker", expected));
  EXPECT_THAT(ConfigPathsToHide(dir.Join("gone.capnp")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.capnp")));
}

TEST(HiddenConfigTest, EveryLaunchGetsThePathsAdded) {
  std::vector<std::string> seen;
  service::Launcher launch = LauncherHiding(
      {"/etc/capbroker", "/etc/policy"},
      [&](const sandbox::SandboxSpec& spec) -> absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> {
        seen = spec.hidden_paths;
        return absl::UnavailableError("not launched");
      });
  sandbox::SandboxSpec spec;
  spec.hidden_paths = {"/etc/other"};
  EXPECT_THAT(launch(spec), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(seen, ElementsAre("/etc/other", "/etc/capbroker", "/etc/policy"));
}

}  // namespace
}  // namespace capbroker::daemon

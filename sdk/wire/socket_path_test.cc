#include "sdk/wire/socket_path.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::wire {
namespace {

using ::testing::HasSubstr;

std::function<const char*(const char*)> Env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(DefaultSocketPathTest, PrefersExplicitVariable) {
  EXPECT_EQ(*DefaultSocketPath(1000, Env({{"CAPBROKER_SOCKET", "/x/s"},
                                          {"XDG_RUNTIME_DIR", "/run/user/1000"}})),
            "/x/s");
}

TEST(DefaultSocketPathTest, UsesRuntimeDir) {
  EXPECT_EQ(*DefaultSocketPath(1000, Env({{"XDG_RUNTIME_DIR", "/run/user/1000"}})),
            "/run/user/1000/capbroker/broker.sock");
  // A relative runtime dir is ignored: it would depend on the cwd.
  EXPECT_FALSE(DefaultSocketPath(1000, Env({{"XDG_RUNTIME_DIR", "rel"}})).ok());
}

TEST(DefaultSocketPathTest, RootFallsBackToSystemSocket) {
  EXPECT_EQ(*DefaultSocketPath(0, Env({})), kSystemSocketPath);
  EXPECT_EQ(*DefaultSocketPath(0, Env({{"CAPBROKER_SOCKET", ""}})), kSystemSocketPath);
}

TEST(DefaultSocketPathTest, UserWithoutAnythingIsNotFound) {
  EXPECT_THAT(DefaultSocketPath(1000, Env({})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--socket")));
}

}  // namespace
}  // namespace capbroker::wire

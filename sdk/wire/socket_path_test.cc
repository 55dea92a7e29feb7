#include "sdk/wire/socket_path.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::wire {
namespace {

using ::testing::ElementsAre;
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

TEST(ClientSocketPathsTest, ExplicitVariableIsTheOnlyPlace) {
  EXPECT_THAT(ClientSocketPaths(Env({{"CAPBROKER_SOCKET", "/x/s"},
                                     {"XDG_RUNTIME_DIR", "/run/user/1000"}})),
              ElementsAre("/x/s"));
}

TEST(ClientSocketPathsTest, PerUserSocketThenSystemSocket) {
  EXPECT_THAT(ClientSocketPaths(Env({{"XDG_RUNTIME_DIR", "/run/user/1000"}})),
              ElementsAre("/run/user/1000/capbroker/broker.sock", std::string(kSystemSocketPath)));
}

// A user without a runtime dir still reaches a root broker.
TEST(ClientSocketPathsTest, WithoutRuntimeDirTheSystemSocket) {
  EXPECT_THAT(ClientSocketPaths(Env({})), ElementsAre(std::string(kSystemSocketPath)));
  EXPECT_THAT(ClientSocketPaths(Env({{"CAPBROKER_SOCKET", ""}, {"XDG_RUNTIME_DIR", "rel"}})),
              ElementsAre(std::string(kSystemSocketPath)));
}

}  // namespace
}  // namespace capbroker::wire

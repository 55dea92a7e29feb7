#include "sdk/wire/socket_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::wire {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The paths of `sockets`, those made from XDG_RUNTIME_DIR marked "checked:".
std::vector<std::string> Paths(const std::vector<ClientSocket>& sockets) {
  std::vector<std::string> paths;
  for (const ClientSocket& socket : sockets) {
    paths.push_back((socket.from_runtime_dir ? "checked:" : "") + socket.path);
  }
  return paths;
}

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

// `su` (not `su -`) and `sudo -E` keep the user's XDG_RUNTIME_DIR: for
// root, a runtime directory root does not own is someone else's. A root
// broker must not try to listen there, nor root's client connect to a
// broker that user runs (it could hand root any fds it likes).
TEST(DefaultSocketPathTest, RootSkipsARuntimeDirItDoesNotOwn) {
  capbroker::testing::TempDir dir;
  const std::string theirs = dir.Join("user");
  ASSERT_EQ(mkdir(theirs.c_str(), 0700), 0);
  if (chown(theirs.c_str(), 65534, 65534) != 0) {
    GTEST_SKIP() << "cannot give the directory away here: " << errno;
  }
  auto env = Env({{"XDG_RUNTIME_DIR", theirs}});
  EXPECT_EQ(*DefaultSocketPath(0, env), kSystemSocketPath);
  EXPECT_THAT(Paths(ClientSocketPaths(0, env)), ElementsAre(std::string(kSystemSocketPath)));
  EXPECT_THAT(ForeignRuntimeDir(0, env),
              ::testing::Optional(AllOf(HasSubstr(theirs), HasSubstr("uid 65534"))));
  // Not there at all: not root's either.
  auto missing = Env({{"XDG_RUNTIME_DIR", dir.Join("none")}});
  EXPECT_EQ(*DefaultSocketPath(0, missing), kSystemSocketPath);
  EXPECT_THAT(Paths(ClientSocketPaths(0, missing)), ElementsAre(std::string(kSystemSocketPath)));
  // The user it belongs to goes on using it.
  EXPECT_EQ(*DefaultSocketPath(65534, env), theirs + "/capbroker/broker.sock");
  EXPECT_EQ(ForeignRuntimeDir(65534, env), std::nullopt);
  // Named explicitly, a socket is used whatever its directory.
  EXPECT_EQ(*DefaultSocketPath(0, Env({{"CAPBROKER_SOCKET", theirs + "/s"},
                                       {"XDG_RUNTIME_DIR", theirs}})),
            theirs + "/s");
}

// Root's, but writable by others (/tmp, as containers often set it for
// root): any user could run a broker at capbroker/broker.sock in it.
TEST(DefaultSocketPathTest, RootSkipsARuntimeDirOthersMayWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a directory owned by root";
  capbroker::testing::TempDir dir;
  const std::string shared = dir.Join("shared");
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  auto env = Env({{"XDG_RUNTIME_DIR", shared}});
  EXPECT_EQ(*DefaultSocketPath(0, env), kSystemSocketPath);
  EXPECT_THAT(Paths(ClientSocketPaths(0, env)), ElementsAre(std::string(kSystemSocketPath)));
  EXPECT_THAT(ForeignRuntimeDir(0, env),
              ::testing::Optional(AllOf(HasSubstr(shared), HasSubstr("mode 1777"),
                                        HasSubstr("writable by others"))));
  ASSERT_EQ(chmod(shared.c_str(), 0720), 0);  // group-writable is no better
  EXPECT_THAT(Paths(ClientSocketPaths(0, env)), ElementsAre(std::string(kSystemSocketPath)));
}

// Root's own runtime directory (a root login session's /run/user/0) stays
// root's default.
TEST(DefaultSocketPathTest, RootUsesARuntimeDirItOwns) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a directory owned by root";
  capbroker::testing::TempDir dir;
  auto env = Env({{"XDG_RUNTIME_DIR", dir.path()}});
  EXPECT_EQ(*DefaultSocketPath(0, env), dir.path() + "/capbroker/broker.sock");
  EXPECT_THAT(Paths(ClientSocketPaths(0, env)),
              ElementsAre("checked:" + dir.path() + "/capbroker/broker.sock",
                          std::string(kSystemSocketPath)));
  EXPECT_EQ(ForeignRuntimeDir(0, env), std::nullopt);
}

TEST(ClientSocketPathsTest, ExplicitVariableIsTheOnlyPlace) {
  EXPECT_THAT(Paths(ClientSocketPaths(1000, Env({{"CAPBROKER_SOCKET", "/x/s"},
                                                 {"XDG_RUNTIME_DIR", "/run/user/1000"}}))),
              ElementsAre("/x/s"));
}

TEST(ClientSocketPathsTest, PerUserSocketThenSystemSocket) {
  EXPECT_THAT(Paths(ClientSocketPaths(1000, Env({{"XDG_RUNTIME_DIR", "/run/user/1000"}}))),
              ElementsAre("checked:/run/user/1000/capbroker/broker.sock",
                          std::string(kSystemSocketPath)));
}

// A user without a runtime dir still reaches a root broker.
TEST(ClientSocketPathsTest, WithoutRuntimeDirTheSystemSocket) {
  EXPECT_THAT(Paths(ClientSocketPaths(1000, Env({}))),
              ElementsAre(std::string(kSystemSocketPath)));
  EXPECT_THAT(Paths(ClientSocketPaths(
                  1000, Env({{"CAPBROKER_SOCKET", ""}, {"XDG_RUNTIME_DIR", "rel"}}))),
              ElementsAre(std::string(kSystemSocketPath)));
}

}  // namespace
}  // namespace capbroker::wire

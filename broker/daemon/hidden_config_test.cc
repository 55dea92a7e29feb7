#include "broker/daemon/hidden_config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

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
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  return real == nullptr ? path : std::string(real.get());
}

UniqueFd OpenDirectory(const std::string& path) {
  return UniqueFd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

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

// Each launch reads the guard anew: after a reload found the policy
// elsewhere, launches hide it there.
TEST(HiddenConfigTest, EveryLaunchGetsThePathsAdded) {
  std::vector<std::string> seen;
  ConfigGuard guard(PolicyLocation{{"/etc/capbroker", "/etc/policy"}, {}});
  service::Launcher launch = LauncherHiding(
      guard,
      [&](const sandbox::SandboxSpec& spec) -> absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> {
        seen = spec.hidden_paths;
        return absl::UnavailableError("not launched");
      });
  sandbox::SandboxSpec spec;
  spec.hidden_paths = {"/etc/other"};
  EXPECT_THAT(launch(spec), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(seen, ElementsAre("/etc/other", "/etc/capbroker", "/etc/policy"));
  guard.SetPolicy(PolicyLocation{{"/etc/capbroker", "/srv/v2/policy"}, {}});
  EXPECT_THAT(launch(spec), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(seen, ElementsAre("/etc/other", "/etc/capbroker", "/srv/v2/policy"));
}

TEST(HiddenConfigTest, TheDirectoriesHoldingAFileAreEveryOneUpToTheRoot) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("conf").c_str(), 0755), 0);
  dir.WriteFile("conf/policy.capnp", "()");
  ASSERT_EQ(symlink(dir.Join("conf").c_str(), dir.Join("link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(std::vector<GuardedDirectory> guarded,
                       DirectoriesHolding(dir.Join("link/policy.capnp"), BrokerFile::kPolicy));
  // By the canonical path: conf, its parents, and "/" last.
  std::string conf = RealPath(dir.Join("conf"));
  ASSERT_GE(guarded.size(), 2u);
  EXPECT_EQ(guarded[0].path, conf);
  EXPECT_EQ(guarded[1].path, RealPath(dir.path()));
  EXPECT_EQ(guarded.back().path, "/");
  struct stat root;
  ASSERT_EQ(stat("/", &root), 0);
  EXPECT_EQ(guarded.back().dev, root.st_dev);
  EXPECT_EQ(guarded.back().ino, root.st_ino);
  EXPECT_THAT(guarded[0].holds,
              StartsWith(absl::StrCat("the broker's policy file ", conf, "/policy.capnp: ")));
  EXPECT_THAT(DirectoriesHolding(dir.Join("gone.sock"), BrokerFile::kSocket),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.sock")));
}

// A directory grant that holds the policy file or the socket, by any path
// to it, is refused; others, and the policy file granted as a file, pass.
TEST(HiddenConfigTest, AGrantHoldingAGuardedFileIsRefused) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("conf").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Join("run").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Join("data").c_str(), 0755), 0);
  std::string policy = dir.WriteFile("conf/policy.capnp", "()");
  dir.WriteFile("run/broker.sock", "");  // what is there does not matter
  ASSERT_EQ(symlink(dir.Join("conf").c_str(), dir.Join("link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(PolicyLocation location, LocatePolicy(policy));
  ConfigGuard guard(std::move(location));
  ASSERT_OK_AND_ASSIGN(SocketLocation socket, LocateSocket(dir.Join("run/broker.sock"), ""));
  guard.AddSocket(std::move(socket));
  auto check = [&](const std::string& path) {
    UniqueFd fd = OpenDirectory(path);
    return guard.CheckGrant("data", fd.get());
  };

  std::string conf = RealPath(dir.Join("conf"));
  std::string top = RealPath(dir.path());
  EXPECT_THAT(check(dir.Join("link")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       StartsWith(absl::StrCat("directory grant 'data' is ", conf,
                                               ", which holds the broker's policy file ", conf,
                                               "/policy.capnp: "))));
  EXPECT_THAT(check(dir.Join("run")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("which holds the broker's socket ",
                                              RealPath(dir.Join("run")), "/broker.sock"))));
  // Above both: both named.
  EXPECT_THAT(check(dir.path()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("directory grant 'data' is ", top,
                                                    ", which holds the broker's policy file")),
                             HasSubstr("; it also holds the broker's socket"))));
  EXPECT_THAT(check("/"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                               HasSubstr("directory grant 'data' is /,")));
  // A directory beside them, and the policy file granted as a file (that is
  // the policy's choice), pass.
  EXPECT_OK(check(dir.Join("data")));
  UniqueFd file(open(policy.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_OK(guard.CheckGrant("policy-file", file.get()));

  // A reload found the policy in data/: that is guarded now, and conf no
  // longer; the socket's directories stay.
  std::string moved = dir.WriteFile("data/policy.capnp", "()");
  ASSERT_OK_AND_ASSIGN(PolicyLocation now, LocatePolicy(moved));
  guard.SetPolicy(std::move(now));
  EXPECT_THAT(check(dir.Join("data")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("which holds the broker's policy file ",
                                              RealPath(dir.Join("data")), "/policy.capnp"))));
  EXPECT_THAT(check(dir.Join("run")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("broker's socket")));
  EXPECT_OK(check(dir.Join("conf")));
}

// A directory grant that holds the broker's audit log (--audit-log), by any
// path to it, is refused: a service could truncate or forge its lines, or
// read every peer's uid, pid and program. The log is hidden in every
// service's root too.
TEST(HiddenConfigTest, AGrantHoldingTheAuditLogIsRefused) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("state").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir.Join("conf").c_str(), 0755), 0);
  std::string log = dir.WriteFile("state/audit.log", "");
  ASSERT_EQ(symlink(dir.Join("state").c_str(), dir.Join("link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(PolicyLocation location,
                       LocatePolicy(dir.WriteFile("conf/policy.capnp", "()")));
  ConfigGuard guard(std::move(location));
  ASSERT_OK_AND_ASSIGN(AuditLogLocation audit_log, LocateAuditLog(dir.Join("link/audit.log")));
  guard.AddAuditLog(std::move(audit_log));

  std::string state = RealPath(dir.Join("state"));
  UniqueFd granted = OpenDirectory(dir.Join("link"));
  EXPECT_THAT(guard.CheckGrant("state", granted.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       StartsWith(absl::StrCat("directory grant 'state' is ", state,
                                               ", which holds the broker's audit log ", state,
                                               "/audit.log: "))));
  UniqueFd top = OpenDirectory(dir.path());
  EXPECT_THAT(guard.CheckGrant("top", top.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("the broker's policy file"),
                             HasSubstr("; it also holds the broker's audit log"))));
  UniqueFd conf = OpenDirectory(dir.Join("conf"));
  EXPECT_THAT(guard.CheckGrant("conf", conf.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, Not(HasSubstr("audit log"))));
  EXPECT_THAT(guard.hidden(), ElementsAre("/etc/capbroker", RealPath(dir.Join("conf/policy.capnp")),
                                          state + "/audit.log"));
  EXPECT_THAT(LocateAuditLog(dir.Join("gone.log")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.log")));
}

// The refusal quotes the real path, which root may have given any name:
// a newline or an escape sequence in it must not reach the broker's log
// (or a terminal) as it is; text in any language stays.
TEST(HiddenConfigTest, TheRefusalQuotesItsPathsEscaped) {
  TempDir dir;
  const std::string conf = dir.Join("d\nx\x1b[2J\xce\xa9");
  ASSERT_EQ(mkdir(conf.c_str(), 0755), 0);
  std::string policy = dir.WriteFile("d\nx\x1b[2J\xce\xa9/policy.capnp", "()");
  ASSERT_OK_AND_ASSIGN(PolicyLocation location, LocatePolicy(policy));
  ConfigGuard guard(std::move(location));
  UniqueFd fd = OpenDirectory(conf);
  absl::Status refused = guard.CheckGrant("data", fd.get());
  ASSERT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  const std::string shown = absl::StrCat(RealPath(dir.path()), "/d\\x0ax\\x1b[2J\xce\xa9");
  EXPECT_THAT(std::string(refused.message()),
              AllOf(StartsWith(absl::StrCat("directory grant 'data' is ", shown,
                                            ", which holds the broker's policy file ", shown,
                                            "/policy.capnp: ")),
                    Not(HasSubstr("\n")), Not(HasSubstr("\x1b"))));
}

// The broker's socket and its lock file are hidden in every service's root,
// by their canonical paths: a service whose root holds the socket (one in
// /etc or /usr) could connect to it, as a client known by its uid. They
// stay hidden across reloads, as the socket's directories stay guarded.
TEST(HiddenConfigTest, TheSocketAndItsLockFileAreHiddenByTheirCanonicalPaths) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("run").c_str(), 0755), 0);
  dir.WriteFile("run/broker.sock", "");  // what is there does not matter
  dir.WriteFile("run/broker.sock.lock", "");
  ASSERT_EQ(symlink(dir.Join("run").c_str(), dir.Join("link").c_str()), 0);
  const std::string run = RealPath(dir.Join("run"));
  ConfigGuard guard(PolicyLocation{{"/etc/capbroker", "/etc/policy"}, {}});
  ASSERT_OK_AND_ASSIGN(SocketLocation socket, LocateSocket(dir.Join("link/broker.sock"),
                                                           dir.Join("link/broker.sock.lock")));
  guard.AddSocket(std::move(socket));
  std::vector<std::string> seen;
  service::Launcher launch = LauncherHiding(
      guard,
      [&](const sandbox::SandboxSpec& spec) -> absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> {
        seen = spec.hidden_paths;
        return absl::UnavailableError("not launched");
      });
  EXPECT_THAT(launch(sandbox::SandboxSpec()), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(seen, ElementsAre("/etc/capbroker", "/etc/policy", run + "/broker.sock",
                                run + "/broker.sock.lock"));
  guard.SetPolicy(PolicyLocation{{"/etc/capbroker", "/srv/v2/policy"}, {}});
  EXPECT_THAT(launch(sandbox::SandboxSpec()), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(seen, ElementsAre("/etc/capbroker", "/srv/v2/policy", run + "/broker.sock",
                                run + "/broker.sock.lock"));
  UniqueFd fd = OpenDirectory(dir.Join("run"));
  EXPECT_THAT(guard.CheckGrant("data", fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("broker's socket")));

  // A socket from systemd has no lock file; one that cannot be resolved is
  // an error naming it.
  ASSERT_OK_AND_ASSIGN(SocketLocation systemd, LocateSocket(dir.Join("run/broker.sock"), ""));
  EXPECT_THAT(systemd.hidden, ElementsAre(run + "/broker.sock"));
  EXPECT_THAT(LocateSocket(dir.Join("run/gone.sock"), ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.sock")));
  EXPECT_THAT(LocateSocket(dir.Join("run/broker.sock"), dir.Join("run/gone.lock")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.lock")));
}

}  // namespace
}  // namespace capbroker::daemon

#include "broker/sandbox/landlock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::sandbox::landlock {
namespace {

using ::capbroker::testing::CallOutcome;
using ::capbroker::testing::ChildResult;
using ::capbroker::testing::RunInChild;
using ::capbroker::testing::TempDir;
using ::testing::AllOf;

std::string TryOpen(const char* name, const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  std::string out = CallOutcome(name, fd);
  if (fd >= 0) close(fd);
  return out;
}

TEST(LandlockTest, AbiAndHandledRights) {
  ASSERT_OK_AND_ASSIGN(int abi, Abi());
  EXPECT_GE(abi, 1);
  EXPECT_EQ(HandledFsRights(1), (1ULL << 13) - 1);
  EXPECT_EQ(HandledFsRights(2), (1ULL << 14) - 1);
  EXPECT_EQ(HandledFsRights(3), (1ULL << 15) - 1);
  EXPECT_EQ(HandledFsRights(4), (1ULL << 15) - 1);
  EXPECT_EQ(HandledFsRights(5), (1ULL << 16) - 1);
  EXPECT_EQ(HandledFsRights(7), (1ULL << 16) - 1);
}

// What an older kernel's Landlock leaves uncovered is said, not dropped:
// scoping below ABI 6, TCP rules below ABI 4 where nothing else denies TCP.
TEST(LandlockTest, WhatAnAbiLeavesUncovered) {
  using ::testing::ElementsAre;
  using ::testing::HasSubstr;
  using ::testing::IsEmpty;
  EXPECT_THAT(UncoveredAt(7, true, true), IsEmpty());
  EXPECT_THAT(UncoveredAt(6, true, true), IsEmpty());
  const auto scoping = HasSubstr("does not scope abstract unix sockets and signals (ABI 6)");
  const auto tcp = HasSubstr("has no TCP rules (ABI 4)");
  const auto truncate = HasSubstr("does not control truncate(2) (ABI 3)");
  EXPECT_THAT(UncoveredAt(5, true, true), ElementsAre(AllOf(HasSubstr("ABI 5 "), scoping)));
  EXPECT_THAT(UncoveredAt(4, true, true), ElementsAre(scoping));
  EXPECT_THAT(UncoveredAt(3, true, true), ElementsAre(AllOf(HasSubstr("ABI 3 "), tcp), scoping));
  EXPECT_THAT(UncoveredAt(3, false, false), ElementsAre(scoping));
  // Below ABI 3, truncate(2) too, where the service sees the host's files.
  EXPECT_THAT(UncoveredAt(2, true, true),
              ElementsAre(AllOf(HasSubstr("ABI 2 "), truncate), tcp, scoping));
  EXPECT_THAT(UncoveredAt(1, true, false), ElementsAre(tcp, scoping));
  EXPECT_THAT(UncoveredAt(2, false, true), ElementsAre(truncate, scoping));
}

// In a child: a ruleset of `abi` (and `deny_tcp`) with the rules
// `add_rules` adds, applied; then `body`, whose result it returns.
std::string ConfinedAt(int abi, bool deny_tcp,
                       const std::function<absl::Status(Ruleset&)>& add_rules,
                       const std::function<std::string()>& body) {
  ChildResult result = RunInChild([&]() -> std::string {
    absl::StatusOr<Ruleset> ruleset = Ruleset::Create(abi, deny_tcp);
    if (!ruleset.ok()) return ruleset.status().ToString();
    if (absl::Status added = add_rules(*ruleset); !added.ok()) return added.ToString();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return "prctl(PR_SET_NO_NEW_PRIVS) failed";
    absl::Status restricted = ruleset->RestrictSelf();
    if (!restricted.ok()) return restricted.ToString();
    return body();
  });
  return result.output;
}

// Every ABI from 1 to the kernel's: a kernel takes the rulesets of older
// ABIs (8 bytes of attributes up to ABI 3, 16 up to ABI 5), which is what a
// broker built for a newer kernel sends an older one.
TEST(LandlockTest, RulesAllowBeneathTheirPathsOnly) {
  ASSERT_OK_AND_ASSIGN(int kernel_abi, Abi());
  for (int abi = 1; abi <= kernel_abi; ++abi) {
    SCOPED_TRACE(absl::StrCat("ABI ", abi));
    TempDir dir;
    std::string readable = dir.Join("readable");
    std::string writable = dir.Join("writable");
    std::string other = dir.Join("other");
    for (const std::string& d : {readable, writable, other}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
    dir.WriteFile("readable/file", "r");
    dir.WriteFile("other/file", "o");
    dir.WriteFile("single", "s");
    std::string out = ConfinedAt(
        abi, /*deny_tcp=*/false,
        [&](Ruleset& ruleset) {
          for (absl::Status s : {ruleset.AllowPath(readable.c_str(), kRead),
                                 ruleset.AllowPath(writable.c_str(), kReadWrite),
                                 // Directory rights on a file are filtered
                                 // out, not refused.
                                 ruleset.AllowPath(dir.Join("single").c_str(), kReadWrite)}) {
            if (!s.ok()) return s;
          }
          return absl::OkStatus();
        },
        [&] {
          std::string out;
          out += TryOpen("read-readable", readable + "/file", O_RDONLY);
          out += TryOpen("write-readable", readable + "/file", O_WRONLY);
          out += TryOpen("create-writable", writable + "/new", O_WRONLY | O_CREAT);
          out += TryOpen("read-other", other + "/file", O_RDONLY);
          out += TryOpen("read-single", dir.Join("single"), O_RDONLY);
          out += TryOpen("truncate-single", dir.Join("single"), O_WRONLY | O_TRUNC);
          out += TryOpen("escape-dotdot", readable + "/../other/file", O_RDONLY);
          out += CallOutcome("exec-other", access((other + "/file").c_str(), X_OK) == 0 ? 0 : -1);
          // truncate(2) is a right of its own from ABI 3 (TRUNCATE).
          out += CallOutcome("truncate-readable", truncate((readable + "/file").c_str(), 0));
          // Moving a file to another directory is REFER from ABI 2, which
          // the writable grant has; ABI 1 refuses every such move.
          out += CallOutcome("mkdir-writable", mkdir((writable + "/sub").c_str(), 0755));
          out += CallOutcome("rename-across",
                             rename((writable + "/new").c_str(), (writable + "/sub/new").c_str()));
          return out;
        });
    EXPECT_EQ(out, absl::StrCat("read-readable=ok;write-readable=EACCES;create-writable=ok;"
                                "read-other=EACCES;read-single=ok;truncate-single=ok;"
                                "escape-dotdot=EACCES;exec-other=EACCES;truncate-readable=",
                                abi >= 3 ? "EACCES" : "ok", ";mkdir-writable=ok;rename-across=",
                                abi >= 2 ? "ok" : "EXDEV", ";"));
  }
}

// A listening socket of `family` bound to `addr`, or an invalid fd (the
// failure recorded).
UniqueFd Listener(int family, const sockaddr* addr, socklen_t len) {
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid()) << strerror(errno);
  EXPECT_EQ(bind(fd.get(), addr, len), 0) << strerror(errno);
  EXPECT_EQ(listen(fd.get(), 1), 0) << strerror(errno);
  return fd;
}

// A listening unix socket at an abstract address (no file: a name in the
// network namespace) that the kernel chose (autobind), and that address.
// Unique: a name made from the test's pid was not, as each test Bazel runs
// in its sandbox has a pid namespace of its own, and the same pid, in the
// network namespace they all share (seen with --runs_per_test: "Address
// already in use").
struct AbstractListener {
  AbstractListener() {
    sockaddr_un unnamed = {};
    unnamed.sun_family = AF_UNIX;
    fd = Listener(AF_UNIX, reinterpret_cast<const sockaddr*>(&unnamed), sizeof(sa_family_t));
    len = sizeof addr;
    EXPECT_EQ(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0)
        << strerror(errno);
  }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr); }

  UniqueFd fd;
  sockaddr_un addr = {};
  socklen_t len = 0;
};

std::string TryConnect(const char* name, int family, const sockaddr* addr, socklen_t len) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::string out = CallOutcome(name, fd < 0 ? -1 : connect(fd, addr, len));
  if (fd >= 0) close(fd);
  return out;
}

// TCP from ABI 4; from ABI 6, the scopes: no abstract unix socket and no
// signal outside the domain, while its own stay usable. Without scoping
// only the network namespace keeps a service from the host's abstract
// sockets: this is what holds when privateNetwork is off or missing.
TEST(LandlockTest, TcpAndScopes) {
  ASSERT_OK_AND_ASSIGN(int kernel_abi, Abi());
  for (int abi = 1; abi <= kernel_abi; ++abi) {
    SCOPED_TRACE(absl::StrCat("ABI ", abi));
    sockaddr_in tcp = {};
    tcp.sin_family = AF_INET;
    tcp.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    UniqueFd tcp_listener = Listener(AF_INET, reinterpret_cast<sockaddr*>(&tcp), sizeof tcp);
    socklen_t len = sizeof tcp;
    ASSERT_EQ(getsockname(tcp_listener.get(), reinterpret_cast<sockaddr*>(&tcp), &len), 0);
    AbstractListener outside;
    pid_t outside_pid = getpid();
    std::string out = ConfinedAt(
        abi, /*deny_tcp=*/true, [](Ruleset&) { return absl::OkStatus(); },
        [&] {
          std::string out = TryConnect("tcp-connect", AF_INET,
                                       reinterpret_cast<const sockaddr*>(&tcp), sizeof tcp);
          out += TryConnect("abstract-outside", AF_UNIX, outside.get(), outside.len);
          // One the domain made itself.
          AbstractListener own;
          out += TryConnect("abstract-own", AF_UNIX, own.get(), own.len);
          out += CallOutcome("signal-outside", kill(outside_pid, 0));
          out += CallOutcome("signal-self", kill(getpid(), 0));
          return out;
        });
    const char* scoped = abi >= 6 ? "EPERM" : "ok";
    EXPECT_EQ(out, absl::StrCat("tcp-connect=", abi >= 4 ? "EACCES" : "ok",
                                ";abstract-outside=", scoped, ";abstract-own=ok;signal-outside=",
                                scoped, ";signal-self=ok;"));
  }
}

}  // namespace
}  // namespace capbroker::sandbox::landlock

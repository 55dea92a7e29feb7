#include "broker/policy/policy.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using schema::Access;

constexpr Access kAll[] = {Access::UNSPECIFIED, Access::READ, Access::WRITE,
                           Access::READ_WRITE, Access::APPEND};

TEST(AccessAllowsTest, FullTable) {
  // granted -> the requests it allows, besides unspecified.
  auto allowed = [](Access granted, Access requested) {
    if (granted == Access::UNSPECIFIED) return false;
    if (requested == Access::UNSPECIFIED || requested == granted) return true;
    if (granted == Access::READ_WRITE) return requested != Access::UNSPECIFIED;
    if (granted == Access::WRITE) return requested == Access::APPEND;
    return false;
  };
  for (Access granted : kAll) {
    for (Access requested : kAll) {
      EXPECT_EQ(AccessAllows(granted, requested), allowed(granted, requested))
          << AccessName(granted) << " / " << AccessName(requested);
    }
  }
  EXPECT_FALSE(AccessAllows(Access::APPEND, Access::WRITE));
  EXPECT_FALSE(AccessAllows(Access::READ, Access::READ_WRITE));
  EXPECT_FALSE(AccessAllows(Access::WRITE, Access::READ));
}

TEST(AccessAllowsTest, UnknownValuesAllowNothing) {
  Access bogus = static_cast<Access>(9);
  EXPECT_FALSE(AccessAllows(bogus, Access::UNSPECIFIED));
  EXPECT_FALSE(AccessAllows(bogus, bogus));
  EXPECT_FALSE(AccessAllows(Access::READ_WRITE, bogus));
}

CapabilitySpec File(std::string name, Access access) {
  CapabilitySpec spec;
  spec.name = std::move(name);
  spec.kind = Kind::kFile;
  spec.path = "/etc/" + spec.name;
  spec.access = access;
  return spec;
}

PrincipalSpec Principal(std::string name, std::vector<size_t> grants) {
  PrincipalSpec spec;
  spec.name = std::move(name);
  spec.grants = std::move(grants);
  return spec;
}

Identity User(uint32_t uid, uint32_t gid = 100, std::string exe = "/usr/bin/cat") {
  return Identity{uid, gid, 4242, std::move(exe), ""};
}

// motd (read), log (write), data (readWrite); ops (uid 1000) grants motd;
// writers (gid 50) grants log and data; catters (exe /usr/bin/cat) grants log.
Policy TestPolicy() {
  std::vector<CapabilitySpec> capabilities = {File("motd", Access::READ),
                                              File("log", Access::WRITE),
                                              File("data", Access::READ_WRITE)};
  PrincipalSpec ops = Principal("ops", {0});
  ops.uid = 1000;
  PrincipalSpec writers = Principal("writers", {1, 2});
  writers.gid = 50;
  PrincipalSpec catters = Principal("catters", {1});
  catters.exe = "/usr/bin/cat";
  return Policy("/etc/capbroker/policy.cb", std::move(capabilities),
                {std::move(ops), std::move(writers), std::move(catters)});
}

TEST(PolicyTest, FindCapability) {
  Policy policy = TestPolicy();
  ASSERT_NE(policy.FindCapability("log"), nullptr);
  EXPECT_EQ(policy.FindCapability("log")->path, "/etc/log");
  EXPECT_EQ(policy.FindCapability("nope"), nullptr);
  EXPECT_EQ(policy.FindCapability(""), nullptr);
  EXPECT_EQ(policy.source(), "/etc/capbroker/policy.cb");
}

std::vector<std::string> Names(const std::vector<const PrincipalSpec*>& principals) {
  std::vector<std::string> names;
  for (const PrincipalSpec* p : principals) names.push_back(p->name);
  return names;
}

TEST(PolicyTest, MatchingPrincipalsNeedEveryCriterion) {
  Policy policy = TestPolicy();
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(1000, 100, "/bin/sh"))),
              ElementsAre("ops"));
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(1000, 50, "/usr/bin/cat"))),
              ElementsAre("ops", "writers", "catters"));
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(7, 7, "/usr/bin/cat2"))),
              ElementsAre());
  // exe is an exact string compare; unknown exe never matches.
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(7, 7, "/usr/bin//cat"))), ElementsAre());
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(7, 7, ""))), ElementsAre());

  PrincipalSpec both;
  both.name = "both";
  both.uid = 1;
  both.gid = 2;
  Policy two("p", {}, {both});
  EXPECT_EQ(two.MatchingPrincipals(User(1, 2)).size(), 1u);
  EXPECT_EQ(two.MatchingPrincipals(User(1, 3)).size(), 0u);
  EXPECT_EQ(two.MatchingPrincipals(User(3, 2)).size(), 0u);
}

TEST(PolicyTest, AnyUserMatchesEveryoneAndEmptyCriteriaNobody) {
  PrincipalSpec everyone;
  everyone.name = "everyone";
  everyone.any_user = true;
  PrincipalSpec nobody;
  nobody.name = "nobody";  // no criterion: fails closed
  Policy policy("p", {}, {everyone, nobody});
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(0, 0, ""))), ElementsAre("everyone"));
  EXPECT_THAT(Names(policy.MatchingPrincipals(User(65534))), ElementsAre("everyone"));
}

TEST(PolicyTest, DecideGrantsWithTheGrantedAccess) {
  Policy policy = TestPolicy();
  Decision decision = policy.Decide(User(1000), "motd", Access::UNSPECIFIED);
  ASSERT_OK(decision.status);
  ASSERT_NE(decision.capability, nullptr);
  EXPECT_EQ(decision.capability->name, "motd");
  EXPECT_EQ(decision.access, Access::READ);
  EXPECT_EQ(decision.principal, "ops");

  decision = policy.Decide(User(1000), "motd", Access::READ);
  ASSERT_OK(decision.status);
  EXPECT_EQ(decision.access, Access::READ);
}

TEST(PolicyTest, DecideAttenuatesToTheRequest) {
  Policy policy = TestPolicy();
  Decision decision = policy.Decide(User(5, 50), "data", Access::READ);
  ASSERT_OK(decision.status);
  EXPECT_EQ(decision.access, Access::READ);
  EXPECT_EQ(decision.principal, "writers");
  decision = policy.Decide(User(5, 50), "log", Access::APPEND);
  ASSERT_OK(decision.status);
  EXPECT_EQ(decision.access, Access::APPEND);
}

TEST(PolicyTest, DecideRefusesWiderThanGranted) {
  Policy policy = TestPolicy();
  Decision decision = policy.Decide(User(1000), "motd", Access::READ_WRITE);
  EXPECT_THAT(decision.status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "'motd' is granted read access by principal 'ops'; "
                       "readWrite was requested"));
  EXPECT_NE(decision.capability, nullptr);
  EXPECT_EQ(decision.principal, "ops") << "the audit line names the grant that was too narrow";
  EXPECT_THAT(policy.Decide(User(5, 50), "log", Access::READ).status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "'log' is granted write access by principal 'writers'; "
                       "read was requested"));
}

// A memfd is mapped, and a shared mapping needs read access: memory is read
// or readWrite, and a write-only or append request is refused rather than
// answered with a read-write fd described as something else.
TEST(PolicyTest, MemoryIsReadOrReadWrite) {
  CapabilitySpec board;
  board.name = "board";
  board.kind = Kind::kMemory;
  board.size = 4096;
  board.access = Access::READ_WRITE;
  PrincipalSpec ops = Principal("ops", {0});
  ops.uid = 1000;
  Policy policy("p", {board}, {ops});
  for (Access ok : {Access::UNSPECIFIED, Access::READ, Access::READ_WRITE}) {
    EXPECT_OK(policy.Decide(User(1000), "board", ok).status) << AccessName(ok);
  }
  for (Access refused : {Access::WRITE, Access::APPEND}) {
    EXPECT_THAT(policy.Decide(User(1000), "board", refused).status,
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("ask for read or readWrite")))
        << AccessName(refused);
  }
}

TEST(PolicyTest, DecideUnknownCapability) {
  Policy policy = TestPolicy();
  Decision decision = policy.Decide(User(1000), "mtod", Access::READ);
  EXPECT_THAT(decision.status, StatusIs(absl::StatusCode::kNotFound,
                                        "no capability named 'mtod' in the policy"));
  EXPECT_EQ(decision.capability, nullptr);
  // A hostile name is escaped and cut short in the message.
  std::string hostile = "\n\x01" + std::string(500, 'x');
  std::string message(policy.Decide(User(1000), hostile, Access::READ).status.message());
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_LT(message.size(), 200u);
}

TEST(PolicyTest, DecideNonMatchingClient) {
  Policy policy = TestPolicy();
  EXPECT_THAT(policy.Decide(User(1001, 100, "/usr/bin/less"), "motd", Access::READ).status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "no principal matching uid=1001 gid=100 exe=/usr/bin/less grants "
                       "'motd'; no principal matches this client"));
  EXPECT_THAT(policy.Decide(User(1001, 100, ""), "motd", Access::READ).status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       ::testing::HasSubstr("uid=1001 gid=100 exe=? grants")));
}

TEST(PolicyTest, DecideNamesPrincipalsThatMatchButDoNotGrant) {
  Policy policy = TestPolicy();
  EXPECT_THAT(policy.Decide(User(1000, 100, "/bin/sh"), "log", Access::WRITE).status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "no principal matching uid=1000 gid=100 exe=/bin/sh grants 'log'; "
                       "principal 'ops' matches but does not grant 'log'"));
  EXPECT_THAT(policy.Decide(User(1000, 50, "/usr/bin/cat"), "motd", Access::READ).status,
              IsOk());
  EXPECT_THAT(policy.Decide(User(2, 50, "/usr/bin/cat"), "motd", Access::READ).status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       ::testing::EndsWith("; principals 'writers', 'catters' match but "
                                           "do not grant 'motd'")));
}

TEST(PolicyTest, DecideUnionOfMatchingPrincipals) {
  Policy policy = TestPolicy();
  Identity all = User(1000, 50, "/usr/bin/cat");  // ops + writers + catters
  Decision motd = policy.Decide(all, "motd", Access::UNSPECIFIED);
  Decision log = policy.Decide(all, "log", Access::UNSPECIFIED);
  Decision data = policy.Decide(all, "data", Access::WRITE);
  ASSERT_OK(motd.status);
  ASSERT_OK(log.status);
  ASSERT_OK(data.status);
  EXPECT_EQ(motd.principal, "ops");
  EXPECT_EQ(log.principal, "writers");  // the first granting one in policy order
  EXPECT_EQ(data.access, Access::WRITE);
  // catters alone grants log but not data.
  EXPECT_OK(policy.Decide(User(9, 9), "log", Access::WRITE).status);
  EXPECT_FALSE(policy.Decide(User(9, 9), "data", Access::READ).status.ok());
}

TEST(PolicyTest, EmptyPolicyDeniesEverything) {
  Policy policy;
  EXPECT_THAT(policy.Decide(User(0), "motd", Access::READ).status,
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(PolicyTest, OutOfRangeGrantIndexGrantsNothing) {
  PrincipalSpec broken = Principal("broken", {7});
  broken.any_user = true;
  Policy policy("p", {File("motd", Access::READ)}, {broken});
  EXPECT_THAT(policy.Decide(User(0), "motd", Access::READ).status,
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
}

TEST(PolicyTest, CopiesAreIndependent) {
  Policy original = TestPolicy();
  Policy copy = original;
  Decision decision = copy.Decide(User(1000), "motd", Access::READ);
  ASSERT_OK(decision.status);
  EXPECT_EQ(decision.capability, copy.FindCapability("motd"));
  EXPECT_NE(decision.capability, original.FindCapability("motd"));
}

}  // namespace
}  // namespace capbroker

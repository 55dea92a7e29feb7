// What capctl, and the SDK client under it, say when they cannot get in:
// a broker that refuses the connection over a quota (resourceExhausted,
// naming the flag that sets it: exit 1), and a socket whose permissions keep
// the user out (unavailable, saying it is the file system and not the
// policy: exit 5, where a policy denial is 3).
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/capctl/capctl.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/sandbox/in_child.h"

namespace capbroker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using testing::BrokerProcess;

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "tester", match = ( uid = $UID ), grants = [ "scratch" ] ) ] )
)";

struct Result {
  int code;
  std::string err;
};

Result Capctl(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int code = RunCapctl(args, out, err);
  return {code, err.str()};
}

// A connection over a quota is answered with the reason before the broker
// closes it, whether the client's hello reached the broker first or not
// (the broker may refuse before or after it arrives: several tries); capctl
// prints it. `held`, a connection made before, is served as before.
void ExpectRefusedNaming(const BrokerProcess& broker, absl::string_view named,
                         Client& held) {
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(Client::Connect(broker.socket_path()),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         AllOf(HasSubstr("the broker refused the connection"),
                               HasSubstr(named))));
  }
  Result r = Capctl({"--socket", broker.socket_path(), "list"});
  EXPECT_EQ(r.code, kExitFailure) << r.err;
  EXPECT_THAT(r.err, StartsWith("capctl: "));
  EXPECT_THAT(r.err, HasSubstr(named));
  EXPECT_THAT(r.err, Not(HasSubstr("reset")));
  // The connection held is served as before.
  EXPECT_OK(held.Acquire("scratch").status());
}

TEST(CapctlAdmissionTest, AConnectionOverThePerUidQuotaIsToldWhichFlagSetsIt) {
  ASSERT_OK_AND_ASSIGN(auto broker,
                       BrokerProcess::Start(kPolicy, {"--max-connections-per-uid", "1"}));
  ASSERT_OK_AND_ASSIGN(Client held, Client::Connect(broker->socket_path()));
  ExpectRefusedNaming(*broker, "(--max-connections-per-uid)", held);
}

// At --max-connections, root (here the broker's own uid too) still gets in,
// to run capctl, within a small reserve: beyond it, it is refused too.
TEST(CapctlAdmissionTest, AtMaxConnectionsRootGetsInWithinItsReserve) {
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::Start(kPolicy, {"--max-connections", "1"}));
  ASSERT_OK_AND_ASSIGN(Client held, Client::Connect(broker->socket_path()));
  Result status = Capctl({"--socket", broker->socket_path(), "status"});
  EXPECT_EQ(status.code, kExitOk) << status.err;
  // The reserve is bounded: hold connections until the broker refuses one
  // (1000: a safety net far above the reserve, never reached).
  std::vector<Client> reserve;
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<Client> more = Client::Connect(broker->socket_path());
    if (!more.ok()) {
      EXPECT_THAT(more.status(), StatusIs(absl::StatusCode::kResourceExhausted,
                                          HasSubstr("(--max-connections)")));
      break;
    }
    reserve.push_back(std::move(more).value());
  }
  EXPECT_GT(reserve.size(), 0u);
  EXPECT_LT(reserve.size(), 1000u);
  ExpectRefusedNaming(*broker, "(--max-connections)", held);
}

// The broker's socket is in a directory only root may enter (the fixture's,
// mode 0700). Another user's capctl is refused by connect(2) with EACCES:
// that is the file system, not the policy, and must not read as a denial
// (exit 3).
TEST(CapctlAdmissionTest, SocketPermissionsAreNotAPolicyDenial) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another user";
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::Start(kPolicy));
  testing::ChildResult child = testing::RunInChild([&]() -> std::string {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
      return "setresuid failed";
    }
    absl::StatusOr<Client> client = Client::Connect(broker->socket_path());
    Result r = Capctl({"--socket", broker->socket_path(), "list"});
    return absl::StrCat(static_cast<int>(client.status().code()), "\n",
                        client.status().message(), "\n", r.code, "\n", r.err);
  });
  ASSERT_TRUE(WIFEXITED(child.wait_status) && WEXITSTATUS(child.wait_status) == 0);
  const std::string& report = child.output;
  EXPECT_THAT(report, HasSubstr(absl::StrCat("\n", kExitUnavailable, "\ncapctl: ")));
  EXPECT_THAT(report, StartsWith(absl::StrCat(static_cast<int>(absl::StatusCode::kUnavailable),
                                              "\n")));
  EXPECT_THAT(report, HasSubstr("Permission denied"));
  EXPECT_THAT(report, HasSubstr("the socket's permissions or those of a directory"));
  EXPECT_THAT(report, HasSubstr("not the broker's policy"));
}

}  // namespace
}  // namespace capbroker

// What capctl, and the SDK client under it, say when the broker refuses
// the connection over a quota: resourceExhausted, naming the flag that sets
// it (exit 1), rather than a reset connection.
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/capctl/capctl.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"

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
// (the broker may refuse before or after it arrives: several tries).
TEST(CapctlAdmissionTest, AConnectionOverAQuotaIsToldWhichFlagSetsIt) {
  struct Case {
    std::string flag;
    std::string named;  // as the reason names it
  };
  for (const Case& c : {Case{"--max-connections-per-uid", "(--max-connections-per-uid)"},
                        Case{"--max-connections", "(--max-connections)"}}) {
    SCOPED_TRACE(c.flag);
    ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::Start(kPolicy, {c.flag, "1"}));
    ASSERT_OK_AND_ASSIGN(Client held, Client::Connect(broker->socket_path()));
    for (int i = 0; i < 20; ++i) {
      EXPECT_THAT(Client::Connect(broker->socket_path()),
                  StatusIs(absl::StatusCode::kResourceExhausted,
                           AllOf(HasSubstr("the broker refused the connection"),
                                 HasSubstr(c.named))));
    }
    Result r = Capctl({"--socket", broker->socket_path(), "list"});
    EXPECT_EQ(r.code, kExitFailure) << r.err;
    EXPECT_THAT(r.err, StartsWith("capctl: "));
    EXPECT_THAT(r.err, HasSubstr(c.named));
    EXPECT_THAT(r.err, Not(HasSubstr("reset")));
    // The connection held is served as before.
    EXPECT_OK(held.Acquire("scratch").status());
  }
}

}  // namespace
}  // namespace capbroker

// `capctl services` and Client::Services against a real capbrokerd hosting
// services: a report larger than one datagram, which comes in pages, and
// an instance removed from the policy listed beside its namesake.
#include <signal.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/capctl/capctl.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/service_binary.h"

namespace capbroker {
namespace {

using ::capbroker::testing::BrokerProcess;

constexpr int kServices = 256;

// The name of service `i`: 64 bytes, in ascending order of i.
std::string Name(int i) { return absl::StrFormat("svc%03d", i) + std::string(58, 'n'); }

// The policy: every service atStart and reachable by this test's uid,
// written in descending order of name (the report comes in name order).
std::string Policy() {
  std::vector<std::string> services;
  for (int i = kServices - 1; i >= 0; --i) {
    services.push_back(absl::StrCat("( name = \"", Name(i),
                                    "\", command = [ \"$SVC\", \"echo\" ], "
                                    "activation = atStart, restart = never, connect = [ \"me\" ] )"));
  }
  return absl::StrCat("( principals = [ ( name = \"me\", match = ( uid = $UID ) ) ],\n",
                      "  services = [ ", absl::StrJoin(services, ",\n    "), " ] )");
}

// 256 services (a policy's most) with names of 64 bytes (a name's most),
// every one running, so that each entry carries its protections: the
// report took 69712 bytes, and capctl failed with "message is 69712
// bytes; at most 65536 fit in one datagram".
TEST(ServicesReportTest, CapctlShowsAReportLargerThanOneDatagram) {
  testing::ServiceBinary binary("tests/services/test_service");
  ASSERT_FALSE(binary.path().empty());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<BrokerProcess> broker,
                       BrokerProcess::Start(absl::StrReplaceAll(Policy(),
                                                                {{"$SVC", binary.path()}})));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  // A connect is answered once its service is ready: then all run, and
  // each entry of the report says what protections are in force.
  for (int i = 0; i < kServices; ++i) {
    ASSERT_OK(client.ConnectService(Name(i)).status()) << i;
  }

  ASSERT_OK_AND_ASSIGN(std::vector<ServiceInfo> services, client.Services());
  ASSERT_EQ(services.size(), static_cast<size_t>(kServices));
  for (int i = 0; i < kServices; ++i) {
    EXPECT_EQ(services[i].name, Name(i));
    EXPECT_EQ(services[i].state, schema::ServiceState::RUNNING) << Name(i);
    EXPECT_FALSE(services[i].protections.empty()) << Name(i);
  }

  std::ostringstream out, err;
  ASSERT_EQ(RunCapctl({"--socket", broker->socket_path(), "services"}, out, err), kExitOk)
      << err.str();
  std::vector<std::string> rows;
  for (absl::string_view line : absl::StrSplit(out.str(), '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "svc")) rows.emplace_back(line.substr(0, 64));
  }
  ASSERT_EQ(rows.size(), static_cast<size_t>(kServices)) << out.str().substr(0, 2000);
  for (int i = 0; i < kServices; ++i) EXPECT_EQ(rows[i], Name(i));
}

// Sends the broker SIGHUP and waits, through status round trips (each an
// event, a reply), until it has installed policy generation `generation`.
void ReloadAndWait(BrokerProcess& broker, Client& client, uint64_t generation) {
  ASSERT_EQ(kill(broker.pid(), SIGHUP), 0);
  for (int i = 0; i < 10000; ++i) {
    ASSERT_OK_AND_ASSIGN(BrokerStatus status, client.Status());
    if (status.policy_generation == generation) return;
  }
  FAIL() << "the broker did not install generation " << generation;
}

// A service removed from the policy and added back while its process
// still runs: the report has both, the removed one after its namesake and
// marked so. (/bin/sleep, pid 1 of its namespace, ignores SIGTERM: it
// stops only at SIGKILL, 5 s after it.)
TEST(ServicesReportTest, ARemovedInstanceFollowsItsNamesakeMarked) {
  constexpr char kWith[] = R"(( principals = [ ( name = "me", match = ( uid = $UID ) ) ],
    services = [ ( name = "keeps", command = [ "/bin/sleep", "1000" ], readiness = exec,
                   activation = atStart, restart = never, connect = [ "me" ] ) ] ))";
  constexpr char kWithout[] = R"(( principals = [ ( name = "me", match = ( uid = $UID ) ) ] ))";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<BrokerProcess> broker, BrokerProcess::Start(kWith));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_OK(client.ConnectService("keeps").status());  // answered once it runs
  ASSERT_OK(broker->RewritePolicy(kWithout));
  // The removed instance is killed 5 s (the stop timeout) after this
  // reload sends it SIGTERM: a machine so loaded that the checks below come
  // later than that cannot show it, and says so rather than fail.
  const absl::Time removed_at = absl::Now();
  auto too_late = [&] { return absl::Now() - removed_at >= absl::Seconds(5); };
  ReloadAndWait(*broker, client, 2);
  ASSERT_OK(broker->RewritePolicy(kWith));
  ReloadAndWait(*broker, client, 3);

  ASSERT_OK_AND_ASSIGN(std::vector<ServiceInfo> services, client.Services());
  if (services.size() == 1 && too_late()) GTEST_SKIP() << "the removed instance was killed first";
  ASSERT_EQ(services.size(), 2u);
  EXPECT_EQ(services[0].name, "keeps");
  EXPECT_FALSE(services[0].removed);
  EXPECT_THAT(services[0].last_exit, ::testing::HasSubstr("waits for its old instance"));
  EXPECT_EQ(services[1].name, "keeps");
  EXPECT_TRUE(services[1].removed);
  EXPECT_EQ(services[1].state, schema::ServiceState::STOPPING);

  std::ostringstream out, err;
  ASSERT_EQ(RunCapctl({"--socket", broker->socket_path(), "services"}, out, err), kExitOk)
      << err.str();
  // Each row, then its notes: the second row's first note says it is an
  // old instance.
  std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  std::vector<size_t> rows;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (absl::StartsWith(lines[i], "keeps ")) rows.push_back(i);
  }
  if (rows.size() == 1 && too_late()) GTEST_SKIP() << "the removed instance was killed first";
  ASSERT_EQ(rows.size(), 2u) << out.str();
  EXPECT_THAT(lines[rows[1]], ::testing::HasSubstr(" stopping "));
  ASSERT_LT(rows[1] + 1, lines.size()) << out.str();
  EXPECT_EQ(lines[rows[1] + 1],
            "  an old instance (removed from the policy, or restarted by a reload), not exited "
            "yet")
      << out.str();
}

}  // namespace
}  // namespace capbroker

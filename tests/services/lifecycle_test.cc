// Hosted services, end to end: a real capbrokerd launches test_service in
// its sandbox. Every wait is on an event: a connect answered (the broker
// answers a connect to a starting service when it is ready or has failed),
// a datagram, or a pidfd becoming readable when a process exits.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/process_watch.h"
#include "tests/fixtures/service_binary.h"

namespace capbroker {
namespace {

using ::capbroker::testing::BrokerProcess;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(( capabilities = [
    ( name = "motd", file = ( path = "$DIR/motd", access = read ) ) ],
  principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "echo", command = [ "$SVC", "echo" ], connect = [ "me" ], grants = [ "motd" ] ),
    ( name = "boot", command = [ "$SVC", "echo" ], connect = [ "me" ],
      activation = atStart ),
    ( name = "crashy", command = [ "$SVC", "crash-after", "3" ], connect = [ "me" ],
      restartDelayMs = 20 ),
    ( name = "broken", command = [ "$SVC", "fail", "1" ], connect = [ "me" ],
      restartDelayMs = 10, restartLimit = 2 ),
    ( name = "slow", command = [ "$SVC", "never-ready" ], connect = [ "me" ],
      startTimeoutMs = 200, restart = never ),
    ( name = "closed", command = [ "$SVC", "echo" ] ),
    ( name = "asks-motd", command = [ "$SVC", "acquire", "motd" ], connect = [ "me" ],
      grants = [ "motd" ] ),
    ( name = "asks-more", command = [ "$SVC", "acquire", "motd" ], connect = [ "me" ] ) ] ))";

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(binary_.path().empty());
    ASSERT_OK_AND_ASSIGN(broker_, BrokerProcess::Start(absl::StrReplaceAll(
                                      kPolicy, {{"$SVC", binary_.path()}})));
    std::ofstream(broker_->dir() + "/motd") << "hello\n";
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(broker_->socket_path()));
  }

  absl::StatusOr<ServiceInfo> Info(absl::string_view name) {
    absl::StatusOr<std::vector<ServiceInfo>> services = client_->Services();
    if (!services.ok()) return services.status();
    for (ServiceInfo& s : *services) {
      if (s.name == name) return s;
    }
    return absl::NotFoundError(std::string(name));
  }

  testing::ServiceBinary binary_{"tests/services/test_service"};
  std::unique_ptr<BrokerProcess> broker_;
  std::optional<Client> client_;
};

// Receives one datagram (waits for it).
std::string Receive(int fd) {
  char buffer[4096];
  ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}


TEST_F(LifecycleTest, OnDemandServiceStartsOnFirstConnect) {
  ASSERT_OK_AND_ASSIGN(ServiceInfo before, Info("echo"));
  EXPECT_EQ(before.state, schema::ServiceState::STOPPED);
  EXPECT_EQ(before.pid, 0);

  ASSERT_OK_AND_ASSIGN(Capability connection, client_->ConnectService("echo"));
  EXPECT_EQ(connection.kind, schema::Kind::CONNECTION);
  // The service learns who connected from the broker.
  EXPECT_EQ(Receive(connection.fd.get()), absl::StrCat("principal=me uid=", getuid()));
  ASSERT_EQ(send(connection.fd.get(), "ping", 4, 0), 4);
  EXPECT_EQ(Receive(connection.fd.get()), "ping");

  ASSERT_OK_AND_ASSIGN(ServiceInfo after, Info("echo"));
  EXPECT_EQ(after.state, schema::ServiceState::RUNNING);
  EXPECT_GT(after.pid, 0);
  EXPECT_THAT(after.protections, HasSubstr("userns"));
  EXPECT_THAT(after.protections, HasSubstr("seccomp"));
  EXPECT_THAT(broker_->AuditLog(), HasSubstr("\"kind\":\"connect\""));
}

TEST_F(LifecycleTest, AtStartServiceRunsBeforeAnyConnect) {
  // The broker was ready before the test connected; the service starts
  // with it, and a connect (an event) waits for its readiness if needed.
  ASSERT_OK_AND_ASSIGN(Capability connection, client_->ConnectService("boot"));
  ASSERT_OK_AND_ASSIGN(ServiceInfo info, Info("boot"));
  EXPECT_EQ(info.activation, "atStart");
  EXPECT_EQ(info.state, schema::ServiceState::RUNNING);
}

TEST_F(LifecycleTest, RefusedConnectSaysWhy) {
  EXPECT_THAT(client_->ConnectService("closed").status(),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("service 'closed' does not list 'me' in connect")));
  EXPECT_THAT(client_->ConnectService("nope").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no service named 'nope'")));
}

TEST_F(LifecycleTest, CrashedServiceIsRestarted) {
  ASSERT_OK_AND_ASSIGN(ServiceInfo first_run, Info("crashy"));
  {
    ASSERT_OK_AND_ASSIGN(Capability c, client_->ConnectService("crashy"));
    EXPECT_THAT(Receive(c.fd.get()), HasSubstr("principal=me"));
    ASSERT_OK_AND_ASSIGN(ServiceInfo running, Info("crashy"));
    first_run = running;
    // Hanging up makes it exit with status 3: a failure.
  }
  testing::ProcessWatch first_process(first_run.pid);
  ASSERT_TRUE(first_process.valid());
  ASSERT_TRUE(first_process.WaitExited());
  // The next connect waits for the restarted service.
  ASSERT_OK_AND_ASSIGN(Capability again, client_->ConnectService("crashy"));
  EXPECT_THAT(Receive(again.fd.get()), HasSubstr("principal=me"));
  ASSERT_OK_AND_ASSIGN(ServiceInfo info, Info("crashy"));
  EXPECT_EQ(info.restarts, 1u);
  EXPECT_NE(info.pid, first_run.pid);
  EXPECT_EQ(info.last_exit, "exit status 3");
}

TEST_F(LifecycleTest, GivesUpAfterTheRestartLimit) {
  // Each connect is answered when a start fails (or, once the limit is hit,
  // says the service failed): the first start, then two restarts.
  int answered_by_a_failed_start = 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    absl::Status status = client_->ConnectService("broken").status();
    ASSERT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    if (absl::StrContains(status.message(), "service 'broken' has failed (exit status 1)")) {
      break;
    }
    EXPECT_THAT(status.message(), HasSubstr("exited before it was ready (exit status 1)"));
    ++answered_by_a_failed_start;
  }
  EXPECT_GE(answered_by_a_failed_start, 1);
  EXPECT_LE(answered_by_a_failed_start, 3);
  ASSERT_OK_AND_ASSIGN(ServiceInfo info, Info("broken"));
  EXPECT_EQ(info.state, schema::ServiceState::FAILED);
  EXPECT_EQ(info.restarts, 2u);
}

TEST_F(LifecycleTest, StartTimeoutAnswersTheClient) {
  EXPECT_THAT(client_->ConnectService("slow").status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("did not become ready within 200 ms")));
}

TEST_F(LifecycleTest, SigtermStopsEveryService) {
  ASSERT_OK(client_->ConnectService("echo").status());
  ASSERT_OK_AND_ASSIGN(ServiceInfo info, Info("echo"));
  testing::ProcessWatch service(info.pid);
  ASSERT_TRUE(service.valid());
  ASSERT_OK(broker_->Stop(SIGTERM).status());
  EXPECT_TRUE(service.WaitExited());
}

TEST_F(LifecycleTest, SigkillOfTheBrokerLeavesNoServiceBehind) {
  ASSERT_OK(client_->ConnectService("echo").status());
  ASSERT_OK_AND_ASSIGN(ServiceInfo echo, Info("echo"));
  ASSERT_OK_AND_ASSIGN(ServiceInfo boot, Info("boot"));
  testing::ProcessWatch echo_process(echo.pid);
  testing::ProcessWatch boot_process(boot.pid);
  ASSERT_TRUE(echo_process.valid());
  ASSERT_TRUE(boot_process.valid());
  ASSERT_OK(broker_->Stop(SIGKILL).status());
  EXPECT_TRUE(echo_process.WaitExited());
  EXPECT_TRUE(boot_process.WaitExited());
}

TEST_F(LifecycleTest, AServiceAcquiresAsItsOwnPrincipal) {
  ASSERT_OK_AND_ASSIGN(Capability granted, client_->ConnectService("asks-motd"));
  EXPECT_EQ(Receive(granted.fd.get()), "acquired motd");
  // Another service, run by the same binary as the same uid, is not
  // granted it: the principal is the service, not its uid or exe.
  ASSERT_OK_AND_ASSIGN(Capability refused, client_->ConnectService("asks-more"));
  EXPECT_THAT(Receive(refused.fd.get()),
              HasSubstr("PERMISSION_DENIED: service 'asks-more' is not granted 'motd'"));
}

TEST_F(LifecycleTest, OnlyAServiceCanSayItIsReady) {
  EXPECT_THAT(client_->Ready(), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("only a hosted service")));
  // The connection still serves.
  EXPECT_OK(client_->Services().status());
}

TEST_F(LifecycleTest, AServiceRemovedFromThePolicyIsStopped) {
  ASSERT_OK(client_->ConnectService("echo").status());
  ASSERT_OK_AND_ASSIGN(ServiceInfo echo, Info("echo"));
  testing::ProcessWatch echo_process(echo.pid);
  ASSERT_TRUE(echo_process.valid());
  std::string without_echo = absl::StrReplaceAll(
      kPolicy,
      {{R"(( name = "echo", command = [ "$SVC", "echo" ], connect = [ "me" ], grants = [ "motd" ] ),)",
        ""}});
  ASSERT_EQ(without_echo.find("\"echo\", command"), std::string::npos);
  without_echo = absl::StrReplaceAll(without_echo, {{"$SVC", binary_.path()}});
  ASSERT_OK(broker_->RewritePolicy(without_echo));
  ASSERT_EQ(kill(broker_->pid(), SIGHUP), 0);
  // SDK services exit when their connection closes.
  EXPECT_TRUE(echo_process.WaitExited());
  EXPECT_THAT(client_->ConnectService("echo").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace capbroker

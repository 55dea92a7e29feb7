// A reload that changes what a running or starting service's sandbox is
// made of restarts it, end to end: a real capbrokerd hosting test_service.
// Every wait is on an event: a line in the broker's log (inotify), a
// pidfd, a connect answered once the service is ready, a reply.
#include <sys/socket.h>

#include <future>
#include <memory>
#include <optional>
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
using ::capbroker::testing::Receive;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPolicy[] = R"(( capabilities = [ ( name = "board", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "holder", command = [ "$SVC", "grants" ], connect = [ "me" ], grants = [ "board" ],
      activation = atStart ),
    ( name = "keeper", command = [ "$SVC", "echo" ], connect = [ "me" ], activation = atStart ),
    ( name = "waits", command = [ "$SVC", "never-ready" ], connect = [ "me" ],
      startTimeoutMs = 60000, restart = never ) ] ))";

constexpr char kHolderGrants[] = R"(grants = [ "board" ],
      activation = atStart ),)";

class ReloadRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(binary_.path().empty());
    testing::BrokerOptions options;
    options.capture_stderr = true;
    ASSERT_OK_AND_ASSIGN(broker_, BrokerProcess::StartWith(WithService(kPolicy), options));
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(broker_->socket_path()));
  }

  std::string WithService(absl::string_view policy) const {
    return absl::StrReplaceAll(policy, {{"$SVC", binary_.path()}});
  }

  // Installs kPolicy with each `from` (which must be in it) replaced by `to`.
  void Reload(std::initializer_list<std::pair<absl::string_view, absl::string_view>> edits) {
    for (const auto& [from, to] : edits) ASSERT_TRUE(absl::StrContains(kPolicy, from)) << from;
    ASSERT_OK(broker_->RewritePolicy(WithService(absl::StrReplaceAll(kPolicy, edits))));
    ASSERT_EQ(kill(broker_->pid(), SIGHUP), 0);
  }

  absl::StatusOr<ServiceInfo> Info(absl::string_view name) {
    absl::StatusOr<std::vector<ServiceInfo>> services = client_->Services();
    if (!services.ok()) return services.status();
    for (ServiceInfo& s : *services) {
      if (s.name == name && !s.removed) return s;
    }
    return absl::NotFoundError(std::string(name));
  }

  // What `name` first says on a new connection (answered once it is ready).
  std::string Greeting(absl::string_view name) {
    absl::StatusOr<Capability> c = client_->ConnectService(name);
    if (!c.ok()) return c.status().ToString();
    return Receive(c->fd.get());
  }

  testing::ServiceBinary binary_{"tests/services/test_service"};
  std::unique_ptr<BrokerProcess> broker_;
  std::optional<Client> client_;
};

// The old process is stopped, with a line that says why; the new one is
// started without the grant (holder is atStart: as soon as the old one is
// gone).
TEST_F(ReloadRestartTest, AReloadThatWithdrawsAStartGrantRestartsTheService) {
  ASSERT_EQ(Greeting("holder"), "grants=board");
  ASSERT_OK_AND_ASSIGN(ServiceInfo before, Info("holder"));
  testing::ProcessWatch old_process(before.pid);
  ASSERT_TRUE(old_process.valid());

  Reload({{kHolderGrants, R"(activation = atStart ),)"}});
  ASSERT_TRUE(broker_->AwaitStderr(
      "capbrokerd: service 'holder': restarts: the reload changed its launch settings "
      "(grants)\n"))
      << broker_->Stderr();
  EXPECT_TRUE(old_process.WaitExited());
  EXPECT_EQ(Greeting("holder"), "grants=");
  ASSERT_OK_AND_ASSIGN(ServiceInfo after, Info("holder"));
  EXPECT_NE(after.pid, before.pid);
  EXPECT_EQ(after.state, schema::ServiceState::RUNNING);
}

// A service whose launch settings did not change keeps its process, and
// the connections it serves, through a reload that restarts another and
// changes who may connect to it.
TEST_F(ReloadRestartTest, AServiceWhoseLaunchSettingsDidNotChangeKeepsRunning) {
  ASSERT_OK_AND_ASSIGN(Capability held, client_->ConnectService("keeper"));
  ASSERT_THAT(Receive(held.fd.get()), HasSubstr("principal=me"));
  ASSERT_OK_AND_ASSIGN(ServiceInfo before, Info("keeper"));

  Reload({{kHolderGrants, R"(activation = atStart ),)"},
          {R"(( name = "keeper", command = [ "$SVC", "echo" ], connect = [ "me" ],)",
           R"(( name = "keeper", command = [ "$SVC", "echo" ], connect = [ "me", "holder" ],)"}});
  // The reload is done once its one restart is logged.
  ASSERT_TRUE(broker_->AwaitStderr("capbrokerd: service 'holder': restarts:")) << broker_->Stderr();
  EXPECT_THAT(broker_->Stderr(), Not(HasSubstr("service 'keeper': restarts")));
  ASSERT_OK_AND_ASSIGN(ServiceInfo after, Info("keeper"));
  EXPECT_EQ(after.pid, before.pid);
  EXPECT_EQ(after.state, schema::ServiceState::RUNNING);
  ASSERT_EQ(send(held.fd.get(), "ping", 4, 0), 4);
  EXPECT_EQ(Receive(held.fd.get()), "ping");
}

// A service changed while it starts is stopped too, and the connect that
// waited for it is served by the new instance.
TEST_F(ReloadRestartTest, AServiceChangedWhileItStartsIsRestartedForItsWaitingConnect) {
  ASSERT_OK_AND_ASSIGN(Client waiting, Client::Connect(broker_->socket_path()));
  std::future<absl::StatusOr<Capability>> connected =
      std::async(std::launch::async, [&] { return waiting.ConnectService("waits"); });
  // "waits" (onDemand) is started by the connect, and never becomes ready.
  ASSERT_TRUE(broker_->AwaitStderr("capbrokerd: service 'waits': started, pid "))
      << broker_->Stderr();
  ASSERT_OK_AND_ASSIGN(ServiceInfo starting, Info("waits"));
  ASSERT_EQ(starting.state, schema::ServiceState::STARTING);
  testing::ProcessWatch old_process(starting.pid);
  ASSERT_TRUE(old_process.valid());

  Reload({{R"(command = [ "$SVC", "never-ready" ])", R"(command = [ "$SVC", "echo" ])"}});
  ASSERT_TRUE(broker_->AwaitStderr(
      "capbrokerd: service 'waits': restarts: the reload changed its launch settings "
      "(command)\n"))
      << broker_->Stderr();
  EXPECT_TRUE(old_process.WaitExited());
  absl::StatusOr<Capability> connection = connected.get();
  ASSERT_OK(connection.status());
  EXPECT_EQ(Receive(connection->fd.get()), absl::StrCat("principal=me uid=", getuid()));
  ASSERT_OK_AND_ASSIGN(ServiceInfo after, Info("waits"));
  EXPECT_NE(after.pid, starting.pid);
  EXPECT_EQ(after.state, schema::ServiceState::RUNNING);
}

}  // namespace
}  // namespace capbroker

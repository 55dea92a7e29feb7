// ServeThenStop with a real loop, service host and audit log, and a
// scripted service: the stop that follows serving.
#include "broker/daemon/serve.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "broker/policy/policy_parser.h"
#include "broker/server/request_handler.h"
#include "broker/server/stats.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/forked_launch.h"

namespace capbroker::daemon {
namespace {

using schema::ServiceState;
using ::testing::HasSubstr;

// A service that waits to be told it is ready (notify), so that a connect
// to it waits.
constexpr char kPolicy[] = R"(( principals = [ ( name = "me", match = ( uid = 1000 ) ) ],
  services = [
    ( name = "svc", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = notify,
      startTimeoutMs = 60000, restart = never ) ] ))";

// A launch done at once: a forked child that, on SIGTERM, says so on its
// output and exits 0; until then it waits.
class AtOnceLaunch : public testing::ForkedLaunch {
 public:
  static absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> Start() {
    int output[2];
    if (pipe2(output, O_CLOEXEC | O_NONBLOCK) != 0) return absl::InternalError("pipe2");
    UniqueFd output_read(output[0]), output_write(output[1]);
    // Blocked across the fork: a SIGTERM sent before the child has its
    // handler waits for it.
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &term, &old) != 0) return absl::InternalError("sigprocmask");
    pid_t pid = fork();
    if (pid == 0) {
      static int out = -1;
      out = output_write.get();
      signal(SIGTERM, [](int) {
        constexpr char kSaid[] = "got SIGTERM\n";
        (void)!write(out, kSaid, sizeof(kSaid) - 1);
        _exit(0);
      });
      sigprocmask(SIG_UNBLOCK, &term, nullptr);
      for (;;) pause();
    }
    sigprocmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) return absl::InternalError("fork");
    auto launch = std::make_unique<AtOnceLaunch>();
    absl::Status adopted = launch->Adopt(pid, std::move(output_read));
    if (!adopted.ok()) return adopted;
    return std::unique_ptr<sandbox::PendingLaunch>(std::move(launch));
  }

  int report_fd() const override { return report_.get(); }
  absl::StatusOr<std::optional<sandbox::LaunchedProcess>> Continue() override {
    return std::optional<sandbox::LaunchedProcess>(HandOver());
  }

 private:
  UniqueFd report_{eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};  // watched, never read
};

// What a stop owes: the waiting connect answered and the answer sent, the
// service stopped with SIGTERM and its last words logged, the count of
// suppressed denials written. Owed too when the loop fails (here: the
// signalfd cannot be watched), not only when a signal stops it.
TEST(ServeThenStopTest, ALoopThatFailsStillStopsTheBroker) {
  UniqueFd audit_file(memfd_create("audit", MFD_CLOEXEC));
  ASSERT_TRUE(audit_file.valid());
  // One denial line per uid, then only counted.
  audit::AuditLog audit(audit_file.get(), audit::DenialBudget{1, 0.001});
  server::Stats stats;
  server::RequestHandler handler(audit, stats);
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(kPolicy, "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  server::BrokerLoop loop(handler, audit, stats, server::Limits());
  service::HostOptions options;
  options.launcher = [](const sandbox::SandboxSpec&) { return AtOnceLaunch::Start(); };
  // It exits at SIGTERM: the stop timeout is a safety bound, which the
  // default (5 s) is not on a loaded machine where it may be scheduled late.
  options.stop_timeout = absl::Seconds(60);
  service::ServiceHost services(handler, loop, std::move(options));
  services.PolicyChanged();

  // A client, and its connect waiting for the service to be ready.
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd client(pair[0]);
  Identity identity;
  identity.uid = 1000;
  ASSERT_OK_AND_ASSIGN(uint64_t connection, loop.AddServiceConnection(UniqueFd(pair[1]), identity));
  server::ConnectRequest request;
  request.connection_id = connection;
  request.request_id = 5;
  request.client = identity;
  request.principal = "me";
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> end,
                       services.Connect(*handler.policy().FindService("svc"), request));
  ASSERT_FALSE(end.has_value()) << "connected before the service was ready";
  ASSERT_EQ(services.Report()[0].state, ServiceState::STARTING);

  // A denial of another uid that the budget only counts.
  audit::AuditEvent denial;
  denial.uid = 2000;
  denial.request = "acquire";
  denial.capability = "x";
  denial.reason = "no";
  EXPECT_NE(audit.Record(denial, audit::InstantNow()), 0u);
  EXPECT_EQ(audit.Record(denial, audit::InstantNow()), 0u);

  UniqueFd listener(eventfd(0, EFD_CLOEXEC));  // never readable
  ::testing::internal::CaptureStderr();
  absl::Status served =
      ServeThenStop(loop, listener.get(), [&] { listener.reset(); }, /*control_fd=*/-1,
                    [] { return true; }, services, audit);
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(served, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("epoll_ctl(ADD control fd)")))
      << served;

  // The service was stopped, not left to the host's destructor's SIGKILL.
  server::ServiceReport report = services.Report()[0];
  EXPECT_EQ(report.state, ServiceState::STOPPED);
  EXPECT_EQ(report.last_exit, "exit status 0");
  EXPECT_THAT(log, HasSubstr("capbrokerd: [svc] got SIGTERM\n"));

  // The waiting connect was answered, and the answer sent.
  alignas(capnp::word) char buffer[4096];
  ssize_t n = recv(client.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
  ASSERT_GT(n, 0) << "no answer: " << strerror(errno);
  capnp::FlatArrayMessageReader reader(
      kj::arrayPtr(reinterpret_cast<const capnp::word*>(buffer), n / sizeof(capnp::word)));
  auto reply = reader.getRoot<schema::Reply>();
  EXPECT_EQ(reply.getId(), 5u);
  ASSERT_TRUE(reply.isError());
  EXPECT_THAT(reply.getError().getMessage().cStr(), HasSubstr("the broker is stopping"));

  // The audit log's last lines: the count still waiting was written.
  std::string text(4096, '\0');
  ssize_t got = pread(audit_file.get(), text.data(), text.size(), 0);
  ASSERT_GE(got, 0);
  text.resize(static_cast<size_t>(got));
  EXPECT_THAT(text, HasSubstr("\"event\":\"denialsSuppressed\""));
}

// The loop logs lines clients can provoke within a budget a second, and the
// count of those it suppressed goes with the next line it logs. One still
// pending when the broker stops has no next line: the stop logs it.
TEST(ServeThenStopTest, TheCountOfSuppressedLinesAboutClientsIsLoggedAtStop) {
  UniqueFd audit_file(memfd_create("audit", MFD_CLOEXEC));
  ASSERT_TRUE(audit_file.valid());
  audit::AuditLog audit(audit_file.get());
  server::Stats stats;
  server::RequestHandler handler(audit, stats);
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(kPolicy, "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  server::Limits limits;
  // Every connection refused, each with a line: the clients are the
  // broker's own uid, which may go beyond max_connections (the
  // administrator's reserve) but not beyond its own quota.
  limits.max_connections_per_uid = 0;
  server::BrokerLoop loop(handler, audit, stats, limits);
  service::HostOptions options;
  options.launcher = [](const sandbox::SandboxSpec&)
      -> absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> {
    return absl::InternalError("nothing is launched here");
  };
  service::ServiceHost services(handler, loop, std::move(options));
  services.PolicyChanged();

  // A listener (autobound, abstract) with clients waiting: far more than
  // the loop logs in a second (20), so some are left suppressed at the end
  // even if a second begins on the way.
  constexpr int kClients = 60;
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(sa_family_t)), 0);
  ASSERT_EQ(listen(listener.get(), kClients), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    UniqueFd client(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&address), length), 0)
        << strerror(errno);
    clients.push_back(std::move(client));
  }
  // Stops once every waiting connection was taken (and refused).
  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable at every turn
  auto drained = [&] {
    pollfd p{listener.get(), POLLIN, 0};
    return poll(&p, 1, 0) == 0;
  };
  ::testing::internal::CaptureStderr();
  absl::Status served =
      ServeThenStop(loop, listener.get(), [&] { listener.reset(); }, control.get(), drained,
                    services, audit);
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(served);

  // Every refusal is in the log: as a line, or in a count.
  int refusals = 0;
  uint64_t suppressed = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "capbrokerd: refusing uid ")) ++refusals;
    uint64_t count = 0;
    if (absl::ConsumePrefix(&line, "capbrokerd: (") &&
        absl::ConsumeSuffix(&line, " similar lines suppressed)") &&
        absl::SimpleAtoi(line, &count)) {
      suppressed += count;
    }
  }
  EXPECT_GT(refusals, 0) << log;
  EXPECT_EQ(refusals + suppressed, static_cast<uint64_t>(kClients)) << log;
}

}  // namespace
}  // namespace capbroker::daemon

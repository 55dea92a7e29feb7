// Confinement of a service hosted by a real capbrokerd, proven from inside:
// the escape probe runs as a service with a file and a directory grant and
// tries the broker's own socket, the broker's process, a host file, its own
// directory grant as a broker fd, and everything else
// tests/sandbox/confinement_test.cc lists. Its report comes back through the
// broker's log, each line prefixed with the service name.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/host_etc_dir.h"
#include "tests/fixtures/process_watch.h"
#include "tests/fixtures/service_binary.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kPolicy[] = R"(( capabilities = [
    ( name = "file", file = ( path = "$PUB/granted.txt", access = read ) ),
    ( name = "dir", directory = ( path = "$PUB/data", access = readWrite ) ) ],
  principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "probe", command = [ "$PROBE", "--host-pid=$BROKER", "--host-file=$DIR/secret",
                                  "--unix-socket=$SOCK", "--broker-directory=dir" ],
      grants = [ "file", "dir" ], readiness = exec, restart = never,
      activation = atStart ) ] ))";

TEST(ServiceConfinementTest, EveryEscapeFailsEveryGrantWorks) {
  testing::ServiceBinary probe("tests/sandbox/escape_probe");
  ASSERT_FALSE(probe.path().empty());
  std::string pub = probe.dir();
  std::ofstream(pub + "/granted.txt") << "granted\n";
  ASSERT_EQ(mkdir((pub + "/data").c_str(), 0700), 0);
  ASSERT_EQ(mkdir((pub + "/data/sub").c_str(), 0700), 0);
  // The directory grant is writable by the service's user (nobody).
  ASSERT_EQ(chown((pub + "/data").c_str(), 65534, 65534), 0);

  // The broker's pid is in the policy: start it with a placeholder policy,
  // then load the real one (SIGHUP) and start the probe by reloading.
  testing::BrokerOptions options;
  options.capture_stderr = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::BrokerProcess> broker,
                       testing::BrokerProcess::StartWith("( )", options));
  std::ofstream(broker->dir() + "/secret") << "secret\n";
  ASSERT_OK(broker->RewritePolicy(absl::StrReplaceAll(
      kPolicy, {{"$PUB", pub}, {"$PROBE", probe.path()},
                {"$BROKER", absl::StrCat(broker->pid())},
                {"$SOCK", broker->socket_path()}})));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_EQ(kill(broker->pid(), SIGHUP), 0);

  // Wait for the probe to run and exit: find it (the reload is done once a
  // later request is answered), then wait on its pidfd. Each look is a round
  // trip; the deadline only stops a broker that never starts it (a count of
  // looks would run out first on a loaded machine).
  int32_t pid = 0;
  for (absl::Time deadline = absl::Now() + absl::Seconds(60);
       pid == 0 && absl::Now() < deadline;) {
    ASSERT_OK_AND_ASSIGN(std::vector<ServiceInfo> services, client.Services());
    if (services.empty()) continue;  // SIGHUP not handled yet
    pid = services[0].pid;
    if (pid == 0 && !services[0].last_exit.empty()) break;  // already done
  }
  if (pid != 0) {
    testing::ProcessWatch probe_process(pid);
    if (probe_process.valid()) {
      ASSERT_TRUE(probe_process.WaitExited());
    }
  }
  // Answered after the broker handled the exit and read the last output.
  ASSERT_OK_AND_ASSIGN(std::vector<ServiceInfo> services, client.Services());
  ASSERT_EQ(services.size(), 1u);
  EXPECT_EQ(services[0].last_exit, "exit status 0") << broker->Stderr();

  std::vector<std::string> report;
  for (absl::string_view line : absl::StrSplit(broker->Stderr(), '\n')) {
    if (absl::ConsumePrefix(&line, "capbrokerd: [probe] ")) report.emplace_back(line);
  }
  ASSERT_THAT(report, Contains("done")) << broker->Stderr();
  for (const std::string& line : report) EXPECT_THAT(line, Not(HasSubstr("ESCAPED")));
  EXPECT_THAT(report, Contains(HasSubstr("grant file: works")));
  EXPECT_THAT(report, Contains(HasSubstr("grant dir: works")));
  EXPECT_THAT(report, Contains(HasSubstr("grant broker: works")));
  // The broker's socket, its process and its files are out of reach (each
  // attempt was made: its line is there, and no line says ESCAPED).
  EXPECT_THAT(report, Contains(HasSubstr("unix-connect-host-path: blocked")));
  EXPECT_THAT(report, Contains(HasSubstr("signal-host: blocked")));
  EXPECT_THAT(report, Contains(HasSubstr("read-host " + broker->dir() + "/secret: blocked")));
  // Its own directory grant, asked for again at run time, is refused: the
  // broker's fd would be outside the sandbox.
  EXPECT_THAT(report, Contains(HasSubstr("broker-acquire dir: blocked")));
  EXPECT_THAT(report, Contains(HasSubstr("broker-open-beneath dir/sub: blocked")));
  struct stat st;
  EXPECT_EQ(stat((pub + "/data/created-by-probe").c_str(), &st), 0);
}

constexpr char kSocketPolicy[] = R"(( principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "probe", command = [ "$PROBE", "--connect-only=$SOCK", "--describe=$SOCK.lock" ],
      readiness = exec, restart = never, activation = atStart ) ] ))";

// A broker socket in a directory every service's root holds (/etc here; a
// /usr/local prefix's /usr/local/var/run alike) is hidden there: Landlock
// cannot stop a connect to it, so without the hiding a service would reach
// the broker as a client known by its uid. The socket's lock file beside it
// (server::LockFilePath) is hidden too: the service finds an empty
// read-only stand-in where the name is, not the broker's file (which this
// probe, as nobody, could see but not open: root's, mode 0600).
TEST(ServiceConfinementTest, TheBrokersSocketAndItsLockFileInEtcAreOutOfReach) {
  if (!testing::HostEtcDir::Allowed()) GTEST_SKIP() << "writes in /etc, which takes root";
  testing::ServiceBinary probe("tests/sandbox/escape_probe");
  ASSERT_FALSE(probe.path().empty());
  testing::HostEtcDir dir("capbroker-confinement-test");
  const std::string socket = dir.Join("broker.sock");
  testing::BrokerOptions options;
  options.capture_stderr = true;
  options.socket_path = socket;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<testing::BrokerProcess> broker,
      testing::BrokerProcess::StartWith(
          absl::StrReplaceAll(kSocketPolicy, {{"$PROBE", probe.path()}, {"$SOCK", socket}}),
          options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(socket));
  // Until the probe has run and its exit is on record (each look is a
  // round trip; the deadline only stops a broker that never starts it).
  std::vector<ServiceInfo> services;
  for (absl::Time deadline = absl::Now() + absl::Seconds(60); absl::Now() < deadline;) {
    ASSERT_OK_AND_ASSIGN(services, client.Services());
    ASSERT_EQ(services.size(), 1u);
    if (services[0].pid != 0) {
      testing::ProcessWatch watch(services[0].pid);
      if (watch.valid()) {
        ASSERT_TRUE(watch.WaitExited());
      }
    }
    if (!services[0].last_exit.empty()) break;
  }
  ASSERT_OK_AND_ASSIGN(services, client.Services());
  EXPECT_EQ(services[0].last_exit, "exit status 0") << broker->Stderr();
  EXPECT_THAT(broker->Stderr(),
              HasSubstr(absl::StrCat("capbrokerd: [probe] unix-connect ", socket, ": blocked (")));
  EXPECT_THAT(broker->Stderr(), Not(HasSubstr("ESCAPED")));
  // The lock file as the service found it, against the broker's own.
  const std::string err = broker->Stderr();
  const std::string prefix = absl::StrCat("capbrokerd: [probe] describe ", socket, ".lock: ");
  const size_t at = err.find(prefix);
  ASSERT_NE(at, std::string::npos) << err;
  const std::string seen = err.substr(at + prefix.size(), err.find('\n', at) - at - prefix.size());
  struct stat lock;
  ASSERT_EQ(stat((socket + ".lock").c_str(), &lock), 0) << strerror(errno);
  EXPECT_THAT(seen, AllOf(StartsWith("regular file, mode 0444, 0 bytes, dev:ino "),
                          EndsWith(", read-only mount"),
                          Not(HasSubstr(absl::StrCat(" ", major(lock.st_dev), ":",
                                                     minor(lock.st_dev), ":", lock.st_ino, ",")))));
}

constexpr char kGrantPolicy[] = R"(( capabilities = [
    ( name = "conf", directory = ( path = "$GRANT", access = read ) ) ],
  principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "lister", command = [ "$PROBE", "--list-fds", "--stay" ], grants = [ "conf" ],
      connect = [ "me" ], readiness = exec, restart = never ) ] ))";

std::string RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  return real == nullptr ? path : std::string(real.get());
}

// A directory grant reaches the service as a clone of the host's directory,
// where nothing is hidden (the minimal root hides the policy only in its own
// /etc). Granted the directory of the broker's policy file, a service could
// read the policy; granted that of its socket, it could connect to the
// broker by that path, as a client matched by its uid. Such a service does
// not start, its connects are told why, and it stays failed until a reload.
class DirectoryGrantTest : public ::testing::Test {
 protected:
  // Starts a broker whose socket is in `socket_dir_` and whose service
  // "lister" is granted `grant`, both readable by nobody (the service's
  // user), then connects to the service: the status of that connect.
  absl::Status ConnectGranted(const std::string& grant) {
    EXPECT_EQ(chmod(socket_dir_.path().c_str(), 0755), 0);
    testing::BrokerOptions options;
    options.socket_path = socket_path_;
    absl::StatusOr<std::unique_ptr<testing::BrokerProcess>> started =
        testing::BrokerProcess::StartWith(
            absl::StrReplaceAll(kGrantPolicy, {{"$GRANT", grant}, {"$PROBE", probe_.path()}}),
            options);
    if (!started.ok()) return started.status();
    broker_ = std::move(*started);
    EXPECT_EQ(chmod(broker_->dir().c_str(), 0755), 0);
    absl::StatusOr<Client> client = Client::Connect(socket_path_);
    if (!client.ok()) return client.status();
    client_ = std::make_unique<Client>(std::move(*client));
    return client_->ConnectService("lister").status();
  }

  // The audit lines of the start grant of capability 'conf'.
  std::vector<std::string> StartGrantLines() {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(broker_->AuditLog(), '\n')) {
      if (absl::StrContains(line, R"("request":{"kind":"start","capability":"conf")")) {
        lines.emplace_back(line);
      }
    }
    return lines;
  }

  // The service's one entry in `capctl services`.
  ServiceInfo Lister() {
    absl::StatusOr<std::vector<ServiceInfo>> services = client_->Services();
    EXPECT_OK(services.status());
    if (!services.ok() || services->size() != 1) return ServiceInfo();
    return (*services)[0];
  }

  testing::ServiceBinary probe_{"tests/sandbox/escape_probe"};
  testing::TempDir socket_dir_;
  std::string socket_path_ = socket_dir_.Join("broker.sock");
  std::unique_ptr<testing::BrokerProcess> broker_;
  std::unique_ptr<Client> client_;
};

TEST_F(DirectoryGrantTest, AServiceGrantedThePolicysDirectoryDoesNotStart) {
  ASSERT_FALSE(probe_.path().empty());
  // $DIR: the broker's own directory, which holds its policy file.
  absl::Status connected = ConnectGranted("$DIR");
  ASSERT_NE(broker_, nullptr) << connected;
  std::string dir = RealPath(broker_->dir());
  std::string why = absl::StrCat("directory grant 'conf' is ", dir,
                                 ", which holds the broker's policy file ", dir,
                                 "/policy.capnp");
  EXPECT_THAT(connected, StatusIs(absl::StatusCode::kUnavailable, HasSubstr(why)));
  EXPECT_THAT(connected, StatusIs(absl::StatusCode::kUnavailable,
                                  HasSubstr("grant a directory beneath it")));
  ServiceInfo lister = Lister();
  EXPECT_EQ(lister.state, schema::ServiceState::FAILED);
  EXPECT_THAT(lister.last_exit, HasSubstr(why));
  // Failed until a reload: a second connect is refused without a launch.
  EXPECT_THAT(client_->ConnectService("lister").status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(why)));
  EXPECT_EQ(Lister().restarts, 0u);
  // Nothing was handed out, and the audit log says so: the refusal, once,
  // as a denied start grant, and nothing granted.
  EXPECT_THAT(StartGrantLines(),
              ElementsAre(AllOf(HasSubstr(R"("capability":"conf")"),
                                HasSubstr(R"("decision":"denied")"),
                                HasSubstr("directory grant 'conf' is "))));
}

TEST_F(DirectoryGrantTest, AServiceGrantedTheSocketsDirectoryDoesNotStart) {
  ASSERT_FALSE(probe_.path().empty());
  std::string dir = RealPath(socket_dir_.path());
  absl::Status connected = ConnectGranted(dir);
  ASSERT_NE(broker_, nullptr) << connected;
  EXPECT_THAT(connected,
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("directory grant 'conf' is ", dir,
                                              ", which holds the broker's socket ", dir,
                                              "/broker.sock"))));
  EXPECT_EQ(Lister().state, schema::ServiceState::FAILED);
}

// A directory beside them is granted as before, and on record.
TEST_F(DirectoryGrantTest, AServiceGrantedAnotherDirectoryStarts) {
  ASSERT_FALSE(probe_.path().empty());
  testing::TempDir other;
  ASSERT_EQ(chmod(other.path().c_str(), 0755), 0);
  EXPECT_OK(ConnectGranted(other.path()));
  EXPECT_THAT(StartGrantLines(), ElementsAre(HasSubstr(R"("decision":"granted")")));
}

// The policy's path may lead through a symlink of root's, which root may
// re-point (`ln -sfn v2 current`, a new version of the configuration):
// after the reload that reads the policy in its new directory, that
// directory is the one no service may be granted.
TEST_F(DirectoryGrantTest, TheDirectoryThePolicyIsReloadedFromIsGuarded) {
  ASSERT_FALSE(probe_.path().empty());
  testing::TempDir config;
  ASSERT_EQ(chmod(config.path().c_str(), 0755), 0);
  std::string base = RealPath(config.path());
  for (const char* version : {"v1", "v2"}) {
    ASSERT_EQ(mkdir(absl::StrCat(base, "/", version).c_str(), 0755), 0);
  }
  std::string policy = absl::StrReplaceAll(
      kGrantPolicy,
      {{"$GRANT", base + "/v2"}, {"$PROBE", probe_.path()}, {"$UID", absl::StrCat(getuid())}});
  config.WriteFile("v1/policy.capnp", policy, 0644);
  ASSERT_EQ(symlink("v1", (base + "/current").c_str()), 0);
  EXPECT_EQ(chmod(socket_dir_.path().c_str(), 0755), 0);
  testing::BrokerOptions options;
  options.socket_path = socket_path_;
  options.policy_path = base + "/current/policy.capnp";
  ASSERT_OK_AND_ASSIGN(broker_, testing::BrokerProcess::StartWith("", options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(socket_path_));

  // A new version, in v2, and `current` re-pointed at it (by rename, as
  // `ln -sfn` does), then reloaded.
  config.WriteFile("v2/policy.capnp", policy, 0644);
  ASSERT_EQ(symlink("v2", (base + "/next").c_str()), 0);
  ASSERT_EQ(rename((base + "/next").c_str(), (base + "/current").c_str()), 0);
  ASSERT_EQ(kill(broker_->pid(), SIGHUP), 0);
  // Each look is a round trip; the deadline only stops a broker that never
  // reloads.
  uint64_t generation = 0;
  for (absl::Time deadline = absl::Now() + absl::Seconds(60);
       generation < 2 && absl::Now() < deadline;) {
    ASSERT_OK_AND_ASSIGN(BrokerStatus status, client.Status());
    ASSERT_FALSE(status.last_reload_refused) << status.last_reload_error;
    generation = status.policy_generation;
  }
  ASSERT_EQ(generation, 2u);
  EXPECT_THAT(client.ConnectService("lister").status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("directory grant 'conf' is ", base,
                                              "/v2, which holds the broker's policy file ",
                                              base, "/v2/policy.capnp"))));
}

}  // namespace
}  // namespace capbroker

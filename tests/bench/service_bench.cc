// service_bench: hosted services against their baselines, in one run.
//
//   cold start  a connect to a stopped on-demand service, until the service
//               (started in its sandbox, ready, handed the connection) has
//               sent its first datagram; against `bwrap --unshare-all`
//               running the same program until it exits.
//   connection  a connect to a running service, until its first datagram
//               arrives; against two raw SCM_RIGHTS round trips whose replies
//               carry one end of a new socketpair each (the kernel work a
//               connection needs), and, for reference, an existing memfd.
//
// Everything runs on one CPU (the processes hand it to each other, so the
// time is the work, not a VM's wake-up latency), and the two sides of each
// comparison alternate, so a drift in the machine's load hits both.
#include <errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/service/start_limiter.h"
#include "sdk/client/client.h"
#include "sdk/wire/unix_socket.h"
#include "tests/bench/raw_exchange.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/process_watch.h"
#include "tests/fixtures/service_binary.h"

namespace capbroker {
namespace {

using bench::Die;

constexpr char kPolicy[] = R"(
( principals = [ ( name = "bench", match = ( uid = $UID ) ) ],
  services = [ $COLD
    ( name = "warm", command = [ "$SVC", "serve" ], connect = [ "bench" ] ) ] )
)";

constexpr int kColdRuns = 40;
// The broker starts a service at most StartLimit::burst times at once, then
// five times a second: the cold starts take turns among enough services
// that none waits for its turn.
const int kColdServices = (kColdRuns + service::StartLimit().burst - 1) /
                          service::StartLimit().burst;

std::string ColdService(int i) { return absl::StrCat("cold", i); }

// The policy's cold services, each a line.
std::string ColdServices(const std::string& program) {
  std::string services;
  for (int i = 0; i < kColdServices; ++i) {
    absl::StrAppend(&services, "( name = \"", ColdService(i), "\", command = [ \"", program,
                    "\", \"once\" ], connect = [ \"bench\" ], restart = never ),\n");
  }
  return services;
}
constexpr int kConnectRuns = 3000;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1 : v[v.size() / 2];
}

void PinToCpu0(pid_t pid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  if (sched_setaffinity(pid, sizeof(set), &set) != 0) Die("sched_setaffinity failed");
}

// Waits for a datagram on `fd` (the service's greeting).
void ExpectGreeting(int fd) {
  char buffer[16];
  if (recv(fd, buffer, sizeof(buffer), 0) != 2) Die("no greeting from the service");
}

int32_t ServicePid(Client& client, absl::string_view name) {
  absl::StatusOr<std::vector<ServiceInfo>> services = client.Services();
  if (!services.ok()) Die(services.status().ToString());
  for (const ServiceInfo& s : *services) {
    if (s.name == name) return s.pid;
  }
  Die("no such service");
}

// A raw server process on a socketpair (bench::ServePair).
class RawServer {
 public:
  explicit RawServer(int grant_fd) {
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
    if (!pair.ok()) Die("socketpair failed");
    pid_ = fork();
    if (pid_ < 0) Die("fork failed");
    if (pid_ == 0) {
      pair->first.reset();
      bench::ServePair(pair->second.get(), grant_fd);
    }
    if (grant_fd >= 0) close(grant_fd);
    fd_ = std::move(pair->first);
  }
  ~RawServer() {
    fd_.reset();
    waitpid(pid_, nullptr, 0);
  }
  // Two exchanges, in microseconds.
  double TwoRoundTrips() {
    absl::Time start = absl::Now();
    if (!bench::RawExchange(fd_.get(), buffer_) || !bench::RawExchange(fd_.get(), buffer_)) {
      Die("raw exchange failed");
    }
    return absl::ToDoubleMicroseconds(absl::Now() - start);
  }

 private:
  pid_t pid_ = -1;
  UniqueFd fd_;
  wire::ReceiveBuffer buffer_;
};

// One cold start of service `name` through the broker, in microseconds.
// Leaves the service stopped again (not timed).
double ColdStart(Client& client, const std::string& name) {
  absl::Time start = absl::Now();
  absl::StatusOr<Capability> connection = client.ConnectService(name);
  if (!connection.ok()) Die(connection.status().ToString());
  ExpectGreeting(connection->fd.get());
  double us = absl::ToDoubleMicroseconds(absl::Now() - start);
  testing::ProcessWatch service(ServicePid(client, name));
  connection->fd.reset();  // the service exits when its client hangs up
  if (!service.WaitExited()) Die("the cold service did not exit");
  // This reply comes after the broker handled the exit, which was pending
  // when the request arrived: the service is stopped for the next run.
  ServicePid(client, name);
  return us;
}

// bwrap running the same program until it exits, in microseconds; -1 when
// bwrap is not installed.
double BwrapRun(const std::string& program, const std::string& dir) {
  absl::Time start = absl::Now();
  pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    execl("/usr/bin/bwrap", "bwrap", "--unshare-all", "--die-with-parent", "--ro-bind",
          "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
          "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
          "--tmpfs", "/tmp", "--ro-bind", dir.c_str(), dir.c_str(), program.c_str(), "exit",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  double us = absl::ToDoubleMicroseconds(absl::Now() - start);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return -1;  // not installed
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("bwrap failed");
  return us;
}

int Main() {
  testing::ServiceBinary binary("tests/bench/bench_service");
  if (binary.path().empty()) Die("cannot copy bench_service");
  absl::StatusOr<std::unique_ptr<testing::BrokerProcess>> broker =
      testing::BrokerProcess::Start(absl::StrReplaceAll(
          kPolicy, {{"$COLD", ColdServices(binary.path())}, {"$SVC", binary.path()}}));
  if (!broker.ok()) Die(broker.status().ToString());
  if (getenv("NO_PIN") == nullptr) PinToCpu0(0);
  if (getenv("NO_PIN") == nullptr) PinToCpu0((*broker)->pid());  // services inherit it
  absl::StatusOr<Client> client = Client::Connect((*broker)->socket_path());
  if (!client.ok()) Die(client.status().ToString());

  // Cold start, alternating with bwrap.
  std::vector<double> cold, bwrap;
  for (int i = 0; i < kColdRuns; ++i) {
    cold.push_back(ColdStart(*client, ColdService(i % kColdServices)));
    double b = BwrapRun(binary.path(), binary.dir());
    if (b >= 0) bwrap.push_back(b);
  }

  // Connection set-up, alternating in blocks with the raw baselines.
  RawServer with_memfd(bench::MakeGrantFd());
  RawServer with_socket(-1);
  {
    // Starts the warm service (not timed).
    absl::StatusOr<Capability> first = client->ConnectService("warm");
    if (!first.ok()) Die(first.status().ToString());
    ExpectGreeting(first->fd.get());
  }
  std::vector<double> connect, raw_socket, raw_memfd;
  constexpr int kBlock = 100;
  for (int done = 0; done < kConnectRuns; done += kBlock) {
    for (int i = 0; i < kBlock; ++i) {
      absl::Time start = absl::Now();
      absl::StatusOr<Capability> connection = client->ConnectService("warm");
      if (!connection.ok()) Die(connection.status().ToString());
      ExpectGreeting(connection->fd.get());
      connect.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    }
    for (int i = 0; i < kBlock; ++i) raw_socket.push_back(with_socket.TwoRoundTrips());
    for (int i = 0; i < kBlock; ++i) raw_memfd.push_back(with_memfd.TwoRoundTrips());
  }

  double c = Median(cold), b = Median(bwrap), s = Median(connect), r = Median(raw_socket),
         m = Median(raw_memfd);
  printf("\n================ capbroker service benchmark summary ================\n");
  printf("cold start, connect to a stopped service until its first datagram "
         "(median of %d): %.0f us\n", kColdRuns, c);
  if (bwrap.empty()) {
    printf("bwrap --unshare-all: not installed (apt-get install bubblewrap)\n");
  } else {
    printf("bwrap --unshare-all running the same program (median of %zu): %.0f us\n",
           bwrap.size(), b);
    printf("cold start: %.2fx of bwrap (target <= 1.0x) %s\n", c / b,
           c <= b ? "MET" : "MISSED");
  }
  printf("connection set-up to a running service (median of %d): %.1f us\n", kConnectRuns, s);
  printf("  vs two raw SCM_RIGHTS round trips, each reply carrying one end of a new "
         "socketpair: %.1f us: %.2fx (target <= 2x) %s\n",
         r, s / r, s / r <= 2.0 ? "MET" : "MISSED");
  printf("  vs two raw round trips carrying an fd that already exists (a memfd): "
         "%.1f us: %.2fx (reference)\n", m, s / m);
  return 0;
}

}  // namespace
}  // namespace capbroker

int main() { return capbroker::Main(); }

// broker_bench: capbrokerd against a raw SEQPACKET + SCM_RIGHTS baseline.
//
//   (a)  raw ping-pong over a socketpair between two processes: a 32-byte
//        request, a 64-byte reply carrying one fd (the same fd each time).
//   (b)  Acquire("board") (a shared memfd the broker already holds) through
//        a real capbrokerd; (b2) Acquire("motd") (a file opened per grant).
//   (c)  grants/s with 1, 4, 16, 64 client processes, against a raw
//        single-threaded epoll server doing the same exchange.
//   (d)  broker RSS per idle connection, with 10,000 idle connections.
// References, to tell the costs apart: (a2) (a) served by an epoll loop;
// (a3) that loop also appending an audit-sized line to a file before each
// reply; (b3) (b) from a raw client instead of the SDK.
//
// (a), (a2), (a3), (b), (b2), (b3) are Google Benchmark benchmarks (real
// time, median of 12 repetitions); (c) and (d) are timed by hand (median of
// 5 for (c)).
#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/unix_socket.h"
#include "tests/bench/raw_exchange.h"
#include "tests/fixtures/broker_process.h"

namespace capbroker {
namespace {

using testing::BrokerProcess;
using bench::Die;
using bench::MakeGrantFd;
using bench::RawExchange;
using bench::RawReply;
using bench::ServePair;

constexpr char kPolicy[] = R"(
( capabilities = [
    ( name = "board", memory = ( size = 4096, shared = true ) ),
    ( name = "motd",  file = ( path = "$DIR/motd", access = read ) ) ],
  principals = [
    ( name = "bench", match = ( uid = $UID ), grants = [ "board", "motd" ] ) ] )
)";

std::unique_ptr<BrokerProcess> g_broker;
// The length of the broker's audit line for one grant of "board" (measured
// at start): what (a3)'s server appends per reply.
size_t g_audit_line_bytes = 0;

// (c)'s raw server: single-threaded, level-triggered epoll, non-blocking
// sockets, one reply with one fd per request. With `log_fd` >= 0, it first
// appends a line as long as the broker's audit line for the same grant, as
// a server that records each grant before delivering it must. Runs until
// killed.
[[noreturn]] void ServeEpoll(int listener, int grant_fd, int log_fd = -1) {
  std::string line(g_audit_line_bytes > 0 ? g_audit_line_bytes - 1 : 0, 'x');
  line += '\n';
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) _exit(3);
  wire::ReceiveBuffer buffer;
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(3);
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        for (;;) {
          int c = accept4(listener, nullptr, nullptr,
                          SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      for (int k = 0; k < 16; ++k) {
        absl::StatusOr<std::optional<wire::Datagram>> got =
            wire::ReceiveDatagram(fd, buffer);
        if (!got.ok()) {
          close(fd);
          break;
        }
        if (!got->has_value()) break;
        if ((*got)->words.size() == 0 &&
            (events[i].events & (EPOLLHUP | EPOLLRDHUP))) {
          close(fd);
          break;
        }
        if (log_fd >= 0 && write(log_fd, line.data(), line.size()) !=
                               static_cast<ssize_t>(line.size())) {
          _exit(3);
        }
        if (!RawReply(fd, grant_fd)) {
          close(fd);
          break;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// (a), (b), (b2): Google Benchmark.

void BM_RawRoundTrip(benchmark::State& state) {
  absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
  if (!pair.ok()) {
    state.SkipWithError("socketpair failed");
    return;
  }
  int grant_fd = MakeGrantFd();
  pid_t pid = fork();
  if (pid == 0) {
    close(pair->first.get());
    ServePair(pair->second.get(), grant_fd);
  }
  close(grant_fd);
  pair->second.reset();
  wire::ReceiveBuffer buffer;
  for (auto _ : state) {
    if (!RawExchange(pair->first.get(), buffer)) {
      state.SkipWithError("raw exchange failed");
      break;
    }
  }
  pair->first.reset();
  waitpid(pid, nullptr, 0);
}

// (a2), a reference: the same exchange with a raw single-threaded epoll
// server, to tell the cost of an event loop apart from the broker's work.
// (a3), with `log` set: that server also appends a line to a file before
// each reply, the floor for a server that records a grant before
// delivering it.
void BM_RawEpollRoundTrip(benchmark::State& state, bool log) {
  std::string path = g_broker->dir() + "/raw-a2.sock";
  std::string log_path = g_broker->dir() + "/raw-a3.log";
  int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  absl::StatusOr<wire::UnixAddress> address = wire::MakeUnixAddress(path);
  if (listener < 0 || !address.ok() ||
      bind(listener, reinterpret_cast<sockaddr*>(&address->addr), address->length) != 0 ||
      listen(listener, 16) != 0) {
    state.SkipWithError("cannot listen");
    return;
  }
  int grant_fd = MakeGrantFd();
  int log_fd = -1;
  if (log) {
    log_fd = open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) Die("cannot open " + log_path);
  }
  pid_t pid = fork();
  if (pid == 0) ServeEpoll(listener, grant_fd, log_fd);
  close(listener);
  close(grant_fd);
  if (log_fd >= 0) close(log_fd);
  absl::StatusOr<UniqueFd> fd = wire::ConnectSeqpacket(path);
  wire::ReceiveBuffer buffer;
  for (auto _ : state) {
    if (!fd.ok() || !RawExchange(fd->get(), buffer)) {
      state.SkipWithError("raw epoll exchange failed");
      break;
    }
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  unlink(path.c_str());
  unlink(log_path.c_str());
}

// (b3), a reference: the broker answering a raw client that sends a
// prebuilt acquire request and checks only that one fd came back, to tell
// the SDK client's cost apart from the broker's.
void BM_BrokerGrantRawClient(benchmark::State& state) {
  absl::StatusOr<Client> client = Client::Connect(g_broker->socket_path());
  if (!client.ok()) {
    state.SkipWithError(std::string(client.status().message()).c_str());
    return;
  }
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(1000);
  request.initAcquire().setName("board");
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  iovec iov{flat.begin(), flat.asBytes().size()};
  wire::ReceiveBuffer buffer;
  for (auto _ : state) {
    absl::StatusOr<bool> sent = wire::SendDatagram(client->fd(), &iov, 1, {});
    absl::StatusOr<std::optional<wire::Datagram>> got =
        wire::ReceiveDatagram(client->fd(), buffer);
    if (!sent.ok() || !*sent || !got.ok() || !got->has_value() ||
        (*got)->fds.size() != 1) {
      state.SkipWithError("raw grant failed");
      break;
    }
  }
}

void BM_BrokerGrant(benchmark::State& state, const char* name) {
  absl::StatusOr<Client> client = Client::Connect(g_broker->socket_path());
  if (!client.ok()) {
    state.SkipWithError(std::string(client.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<Capability> cap = client->Acquire(name);
    if (!cap.ok()) {
      state.SkipWithError(std::string(cap.status().message()).c_str());
      break;
    }
  }
}

// Prints as usual and keeps the median real time (us) of each benchmark.
class CaptureReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
        medians_us[run.run_name.function_name] = run.GetAdjustedRealTime();
      }
    }
  }
  std::map<std::string, double> medians_us;
};

// ---------------------------------------------------------------------------
// (c): N client processes released together.

bool ReadFull(int fd, size_t n) {
  char buf[64];
  while (n > 0) {
    ssize_t r = read(fd, buf, std::min(n, sizeof(buf)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    n -= r;
  }
  return true;
}

// A worker connects in the child (before the barrier) and returns the
// function doing one exchange, or nullptr when it could not connect.
using MakeWorker = std::function<std::function<bool()>()>;

// Forks `n` children, each doing `per_child` exchanges after the barrier.
// Returns exchanges per second, from release to the last child done, or -1.
double RunClients(int n, int per_child, const MakeWorker& make_worker) {
  int ready[2], go[2], done[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC) || pipe2(done, O_CLOEXEC))
    Die("pipe2 failed");
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) Die("fork failed");
    if (pid == 0) {
      close(ready[0]);
      close(go[1]);
      close(done[0]);
      std::function<bool()> exchange = make_worker();
      if (!exchange) _exit(1);
      if (write(ready[1], "r", 1) != 1) _exit(1);
      char c;
      while (read(go[0], &c, 1) < 0 && errno == EINTR) {
      }
      for (int k = 0; k < per_child; ++k) {
        if (!exchange()) _exit(1);
      }
      if (write(done[1], "d", 1) != 1) _exit(1);
      _exit(0);
    }
    pids.push_back(pid);
  }
  close(ready[1]);
  close(go[0]);
  close(done[1]);
  bool all_ready = ReadFull(ready[0], n);
  absl::Time start = absl::Now();
  close(go[1]);  // release: every child's read() sees end of file
  bool all_done = all_ready && ReadFull(done[0], n);
  absl::Time end = absl::Now();
  close(ready[0]);
  close(done[0]);
  bool ok = all_done;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = false;
  }
  if (!ok) return -1;
  return static_cast<double>(n) * per_child / absl::ToDoubleSeconds(end - start);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ---------------------------------------------------------------------------
// (d)

long VmRssBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6) * 1024;
  }
  return -1;
}

// Restricts `pid` (0: this process) to `cpus`, a bit mask of CPU numbers.
void SetAffinity(pid_t pid, uint64_t cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu = 0; cpu < 64; ++cpu) {
    if (cpus & (uint64_t{1} << cpu)) CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(pid, sizeof(set), &set) != 0) Die("sched_setaffinity failed");
}

void WriteFile(const std::string& path, absl::string_view content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, content.data(), content.size()) !=
                    static_cast<ssize_t>(content.size())) {
    Die("cannot write " + path);
  }
  close(fd);
}

int Main(int argc, char** argv) {
  // Many fds: 10,000 idle connections in (d), in this process and in the
  // broker (which inherits the limit).
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  // Repetitions of (a), (a2), (a3), (b) and (b2) interleave at random: run one
  // after another, a drift in the machine's load would land on one of them.
  std::vector<char*> args(argv, argv + argc);
  static char interleave[] = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave);
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());

  absl::StatusOr<std::unique_ptr<BrokerProcess>> broker =
      BrokerProcess::Start(kPolicy);
  if (!broker.ok()) Die(std::string(broker.status().ToString()));
  g_broker = std::move(*broker);
  WriteFile(g_broker->dir() + "/motd", "hello from the broker\n");
  {
    absl::StatusOr<Client> client = Client::Connect(g_broker->socket_path());
    if (!client.ok() || !client->Acquire("board").ok()) Die("cannot acquire board");
    std::string log = g_broker->AuditLog();
    size_t start = log.rfind('\n', log.size() >= 2 ? log.size() - 2 : 0);
    g_audit_line_bytes = log.size() - (start == std::string::npos ? 0 : start + 1);
  }

  // (a), (b) and the references. Most run with both sides on one CPU: they
  // hand the CPU to each other directly, so the time is the work of one
  // round trip. Across CPUs, an idle CPU's wake-up latency (tens of us on a
  // VM) swamps that work; (a) and (b) are also measured that way, as the
  // latency a client sees on this machine.
  uint64_t all_cpus = (uint64_t{1} << std::min<long>(64, sysconf(_SC_NPROCESSORS_ONLN))) - 1;
  auto on = [](uint64_t cpus, auto bm) {
    return [cpus, bm](benchmark::State& state) {
      SetAffinity(0, cpus);  // forked servers inherit it
      SetAffinity(g_broker->pid(), cpus);
      bm(state);
    };
  };
  auto epoll = [](bool log) {
    return [log](benchmark::State& state) { BM_RawEpollRoundTrip(state, log); };
  };
  auto grant = [](const char* name) {
    return [name](benchmark::State& state) { BM_BrokerGrant(state, name); };
  };
  for (benchmark::internal::Benchmark* b : {
           benchmark::RegisterBenchmark("a_raw_roundtrip", on(1, BM_RawRoundTrip)),
           benchmark::RegisterBenchmark("a2_raw_epoll_roundtrip", on(1, epoll(false))),
           benchmark::RegisterBenchmark("a3_raw_epoll_logged_roundtrip", on(1, epoll(true))),
           benchmark::RegisterBenchmark("b_broker_grant_memory", on(1, grant("board"))),
           benchmark::RegisterBenchmark("b3_broker_grant_raw_client",
                                        on(1, BM_BrokerGrantRawClient)),
           benchmark::RegisterBenchmark("b2_broker_grant_file", on(1, grant("motd"))),
           benchmark::RegisterBenchmark("a_raw_roundtrip_2cpu", on(all_cpus, BM_RawRoundTrip)),
           benchmark::RegisterBenchmark("b_broker_grant_memory_2cpu",
                                        on(all_cpus, grant("board")))}) {
    b->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->MinTime(0.2)
        ->Repetitions(12)
        ->ReportAggregatesOnly(true);
  }
  CaptureReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  // Throughput uses every CPU, as a real deployment would.
  SetAffinity(0, all_cpus);
  SetAffinity(g_broker->pid(), all_cpus);

  // (c)
  std::string raw_path = g_broker->dir() + "/raw.sock";
  int grant_fd = MakeGrantFd();
  int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  absl::StatusOr<wire::UnixAddress> address = wire::MakeUnixAddress(raw_path);
  if (listener < 0 || !address.ok() ||
      bind(listener, reinterpret_cast<sockaddr*>(&address->addr),
           address->length) != 0 ||
      listen(listener, 1024) != 0) {
    Die("cannot listen on " + raw_path);
  }
  pid_t raw_server = fork();
  if (raw_server == 0) ServeEpoll(listener, grant_fd);
  close(listener);
  close(grant_fd);

  std::string broker_path = g_broker->socket_path();
  MakeWorker broker_worker = [&broker_path]() -> std::function<bool()> {
    absl::StatusOr<Client> client = Client::Connect(broker_path);
    if (!client.ok()) return nullptr;
    auto shared = std::make_shared<Client>(std::move(*client));
    return [shared]() { return shared->Acquire("board").ok(); };
  };
  MakeWorker raw_worker = [&raw_path]() -> std::function<bool()> {
    absl::StatusOr<UniqueFd> fd = wire::ConnectSeqpacket(raw_path);
    if (!fd.ok()) return nullptr;
    auto shared = std::make_shared<UniqueFd>(std::move(*fd));
    auto buffer = std::make_shared<wire::ReceiveBuffer>();
    return [shared, buffer]() { return RawExchange(shared->get(), *buffer); };
  };

  const int kClients[] = {1, 4, 16, 64};
  const int kTotalPerRun = 40000;
  const int kReps = 5;
  std::map<int, std::pair<double, double>> rates;  // n -> (broker, raw)
  printf("\n(c) throughput, %d grants per run, median of %d runs (broker and raw interleaved):\n", kTotalPerRun, kReps);
  for (int n : kClients) {
    std::vector<double> b, r;
    for (int rep = 0; rep < kReps; ++rep) {
      b.push_back(RunClients(n, kTotalPerRun / n, broker_worker));
      r.push_back(RunClients(n, kTotalPerRun / n, raw_worker));
    }
    rates[n] = {Median(b), Median(r)};
    printf("  %2d clients: broker %8.0f grants/s (runs %.0f..%.0f)   raw %8.0f /s "
           "(runs %.0f..%.0f)\n",
           n, rates[n].first, *std::min_element(b.begin(), b.end()),
           *std::max_element(b.begin(), b.end()), rates[n].second,
           *std::min_element(r.begin(), r.end()),
           *std::max_element(r.begin(), r.end()));
    fflush(stdout);
  }
  kill(raw_server, SIGKILL);
  waitpid(raw_server, nullptr, 0);

  // (d)
  g_broker.reset();
  constexpr int kIdle = 10000;
  absl::StatusOr<std::unique_ptr<BrokerProcess>> big = BrokerProcess::Start(
      kPolicy, {"--max-connections", "20000", "--max-connections-per-uid", "20000"});
  if (!big.ok()) Die(std::string(big.status().ToString()));
  long rss_before = -1, rss_after = -1;
  uint32_t connections = 0;
  std::string d_error;
  {
    absl::StatusOr<Client> first = Client::Connect((*big)->socket_path());
    if (!first.ok()) Die(std::string(first.status().ToString()));
    rss_before = VmRssBytes((*big)->pid());
    std::vector<Client> idle;
    idle.reserve(kIdle);
    for (int i = 0; i < kIdle; ++i) {
      absl::StatusOr<Client> c = Client::Connect((*big)->socket_path());
      if (!c.ok()) {
        d_error = "connection " + std::to_string(i) + ": " + c.status().ToString();
        break;
      }
      idle.push_back(std::move(*c));
    }
    if (d_error.empty()) {
      absl::StatusOr<BrokerStatus> status = idle.back().Status();
      if (!status.ok()) {
        d_error = status.status().ToString();
      } else {
        connections = status->connections;
      }
    }
    rss_after = VmRssBytes((*big)->pid());
  }
  big->reset();

  // Summary.
  auto us = [&reporter](const char* name) {
    auto it = reporter.medians_us.find(name);
    return it == reporter.medians_us.end() ? -1.0 : it->second;
  };
  double a = us("a_raw_roundtrip"), a2 = us("a2_raw_epoll_roundtrip"),
         a3 = us("a3_raw_epoll_logged_roundtrip"),
         bm = us("b_broker_grant_memory"), bf = us("b2_broker_grant_file"),
         braw = us("b3_broker_grant_raw_client"), a_2cpu = us("a_raw_roundtrip_2cpu"),
         b_2cpu = us("b_broker_grant_memory_2cpu");
  printf("\n================ capbroker benchmark summary ================\n");
  {
    // The machine is shared (2 cores): the load tells how noisy this run was.
    std::ifstream load("/proc/loadavg");
    std::string line;
    std::getline(load, line);
    printf("load average at the end: %s\n", line.c_str());
  }
  printf("(a) raw SEQPACKET+SCM_RIGHTS round trip, one CPU: %.2f us\n", a);
  printf("(a2) the same served by a raw epoll loop (reference): %.2f us: %.2fx of (a)\n",
         a2, a2 / a);
  printf("(a3) that loop appending a %zu-byte line to a file before each reply, as the\n"
         "     broker records a grant before delivering it (reference): %.2f us: %.2fx of (a)\n",
         g_audit_line_bytes, a3, a3 / a);
  printf("(b) grant round trip (shared memfd): %.2f us vs raw %.2f us: %.2fx "
         "(target <= 1.3x) %s\n",
         bm, a, bm / a, (bm < 0 || a < 0) ? "NOT MEASURED" : bm / a <= 1.3 ? "MET" : "MISSED");
  printf("(b2) grant round trip (file, opened per grant): %.2f us vs raw %.2f "
         "us: %.2fx (reference)\n",
         bf, a, bf / a);
  printf("(b3) grant round trip, raw client (no SDK): %.2f us vs raw %.2f us: "
         "%.2fx (reference)\n",
         braw, a, braw / a);
  printf("(b) across CPUs (wake-up latency included): %.2f us vs raw %.2f us: %.2fx\n",
         b_2cpu, a_2cpu, b_2cpu / a_2cpu);
  for (int n : kClients) {
    double ratio = rates[n].first / rates[n].second;
    printf("(c) %2d clients: %.1fk grants/s vs raw %.1fk/s: %.2fx (target >= "
           "0.7x) %s\n",
           n, rates[n].first / 1000, rates[n].second / 1000, ratio,
           ratio >= 0.7 ? "MET" : "MISSED");
  }
  if (!d_error.empty()) {
    printf("(d) FAILED: %s\n", d_error.c_str());
  } else {
    double per = static_cast<double>(rss_after - rss_before) / kIdle;
    printf("(d) broker RSS %.1f MiB -> %.1f MiB with %u connections "
           "(expected %d): %.2f KiB per idle connection (target < 4 KiB) %s\n",
           rss_before / 1048576.0, rss_after / 1048576.0, connections, kIdle + 1,
           per / 1024, (per < 4096 && connections == kIdle + 1) ? "MET" : "MISSED");
  }
  return 0;
}

}  // namespace
}  // namespace capbroker

int main(int argc, char** argv) { return capbroker::Main(argc, argv); }

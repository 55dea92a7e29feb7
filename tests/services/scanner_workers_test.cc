// The scanner's worker processes, end to end: a real capbrokerd hosts the
// scanner in its sandbox, and clients connect through the broker.
//
// One client's file lies on a FUSE file system whose server stops
// answering (the FuseFile fixture, mounted in this test's own mount
// namespace), as a hostile client's own server would; the scan of another
// client's ordinary file must still complete. Then the limits on workers
// and what the scanner's main process holds: no client's connection or
// file, no zombie.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "capnp/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "sdk/wire/channel.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "services/scanner/scanner_client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fuse_file.h"
#include "tests/fixtures/process_watch.h"
#include "tests/fixtures/service_binary.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::capbroker::testing::FuseFile;
using ::capbroker::testing::OpenFdTargets;
using ::capbroker::testing::ProcessWatch;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

// How long a reply that should come at once may take before the test
// calls it stalled. Generous: a loaded machine must not fail the test.
constexpr int kReplyDeadlineMs = 10000;

// `scanner-small` may have three processes (RLIMIT_NPROC): its main
// process and two workers, or a worker and the closer of refused
// connections.
constexpr char kPolicy[] = R"(( capabilities = [
    ( name = "signatures", file = ( path = "$PUB/signatures.txt", access = read ) ) ],
  principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "scanner", command = [ "$SCANNER" ], grants = [ "signatures" ],
      connect = [ "me" ], acceptsFds = true ),
    ( name = "scanner-small", command = [ "$SCANNER" ], grants = [ "signatures" ],
      connect = [ "me" ], acceptsFds = true, limits = ( processes = 3 ) ) ] ))";

bool WaitReadable(int fd, int timeout_ms = kReplyDeadlineMs) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

// The children of process `pid` (zombies too).
std::set<pid_t> ChildrenOf(pid_t pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
  std::set<pid_t> children;
  for (pid_t child; file >> child;) children.insert(child);
  return children;
}

// The state letter of /proc/PID/stat ('Z' for a zombie); '?' if gone.
char StateOf(pid_t pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  size_t end = stat.rfind(')');
  return end == std::string::npos || end + 2 >= stat.size() ? '?' : stat[end + 2];
}

class ScannerWorkersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(scanner_.path().empty());
    pub_ = scanner_.dir();
    std::ofstream(pub_ + "/signatures.txt") << scanner::testing::EicarSignatureLine() << "\n";
    ASSERT_OK_AND_ASSIGN(broker_, testing::BrokerProcess::Start(absl::StrReplaceAll(
                                      kPolicy, {{"$PUB", pub_}, {"$SCANNER", scanner_.path()}})));
    ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker_->socket_path()));
    client_ = std::make_unique<Client>(std::move(client));
    std::ofstream(files_.Join("clean.txt")) << "nothing to see here\n";
    clean_.reset(open(files_.Join("clean.txt").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(clean_.valid());
  }

  // A new connection to `service`; its replies must come within the
  // deadline (a stalled scanner fails the test rather than hanging it).
  UniqueFd Connect(absl::string_view service = "scanner") {
    absl::StatusOr<Capability> connection = client_->ConnectService(service);
    EXPECT_OK(connection.status());
    if (!connection.ok()) return UniqueFd();
    timeval deadline{kReplyDeadlineMs / 1000, 0};
    EXPECT_EQ(setsockopt(connection->fd.get(), SOL_SOCKET, SO_RCVTIMEO, &deadline,
                         sizeof(deadline)),
              0);
    return std::move(connection->fd);
  }

  // The service's main process.
  pid_t MainPid(absl::string_view service = "scanner") {
    absl::StatusOr<std::vector<ServiceInfo>> services = client_->Services();
    EXPECT_OK(services.status());
    if (!services.ok()) return 0;
    for (const ServiceInfo& s : *services) {
      if (s.name == service) return s.pid;
    }
    return 0;
  }

  testing::ServiceBinary scanner_{"services/scanner/scanner"};
  std::string pub_;
  std::unique_ptr<testing::BrokerProcess> broker_;
  std::unique_ptr<Client> client_;
  TempDir files_;
  UniqueFd clean_;
};

TEST_F(ScannerWorkersTest, AScanStalledOnTheClientsFuseServerStallsNoOtherClient) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a FUSE file system";
  // The mount stays in this test binary's own mount namespace.
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
  // Both stall points: a file on FUSE itself, which the scanner's fstatfs
  // check would refuse but whose close() (FLUSH) stalls all the same; and a
  // file of an overlay whose lower layer is FUSE, which that check does not
  // see, whose fstat stalls.
  for (bool overlay : {false, true}) {
    SCOPED_TRACE(overlay ? "overlay over FUSE" : "FUSE");
    // Declared in this order so that, on every way out, the FUSE
    // connection is aborted before the test closes its fd of the file
    // (whose FLUSH would wait forever) and the overlay goes before its
    // directory.
    TempDir dir;
    absl::Cleanup unmount_overlay = [&] { umount2(dir.Join("overlay").c_str(), MNT_DETACH); };
    UniqueFd stalling;
    ASSERT_EQ(mkdir(dir.Join("fuse").c_str(), 0755), 0);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<FuseFile> fuse,
                         FuseFile::Mount(dir.Join("fuse"), "stalls.txt",
                                         files_.Join("clean.txt"), /*cache=*/false));
    std::string path = fuse->path();
    if (overlay) {
      ASSERT_EQ(mkdir(dir.Join("empty").c_str(), 0755), 0);
      ASSERT_EQ(mkdir(dir.Join("overlay").c_str(), 0755), 0);
      std::string options =
          absl::StrCat("lowerdir=", dir.Join("fuse"), ":", dir.Join("empty"));
      ASSERT_EQ(mount("overlay", dir.Join("overlay").c_str(), "overlay", MS_RDONLY,
                      options.c_str()),
                0)
          << strerror(errno);
      path = dir.Join("overlay/stalls.txt");
    }
    stalling.reset(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(stalling.valid()) << strerror(errno);

    UniqueFd a_end = Connect();
    const pid_t main = MainPid();
    ASSERT_GT(main, 0);
    std::optional<wire::Channel> a(std::in_place, std::move(a_end));
    fuse->HoldRequests();
    capnp::MallocMessageBuilder request;
    request.initRoot<scanner::schema::Request>().setScan();
    const int fd = stalling.get();
    ASSERT_OK(a->Send(request, {&fd, 1}));
    ASSERT_TRUE(WaitReadable(fuse->held_fd())) << "the scan never reached the FUSE server";

    // B's scan of an ordinary file completes while A's waits.
    UniqueFd b_end = Connect();
    // The same socket as B's client, to hang up on (below).
    UniqueFd b_watch(fcntl(b_end.get(), F_DUPFD_CLOEXEC, 0));
    ASSERT_TRUE(b_watch.valid()) << strerror(errno);
    std::optional<scanner::ScannerClient> b(std::in_place, std::move(b_end));
    absl::StatusOr<scanner::Verdict> verdict = b->Scan(clean_.get());
    EXPECT_OK(verdict.status()) << "a client's stalled file stalled another client's scan";
    EXPECT_FALSE(WaitReadable(a->fd(), 0)) << "A's scan was answered: its file did not stall it";

    // The main process holds the broker connection, and no client's
    // connection or file; A's and B's workers are its children.
    const std::set<pid_t> workers = ChildrenOf(main);
    EXPECT_EQ(workers.size(), 2u);
    // It closes its copy of B's connection right after the fork, which B's
    // worker may have served before; A's it closed before it forked B's
    // worker. B hangs up its sending side: its worker sees the end and
    // exits, and B's end reports the hang-up (POLLHUP) once no process
    // holds the other end, the main process's copy included: an event.
    // Its deadline is a safety net, not a measure: without one, a main
    // process that kept the copy would hang the test while A's scan holds
    // the FUSE server, and a test killed at its timeout then cannot exit
    // (its own close of the stalled file waits on itself).
    ASSERT_EQ(shutdown(b_watch.get(), SHUT_WR), 0) << strerror(errno);
    pollfd hung_up{b_watch.get(), POLLIN, 0};
    ASSERT_EQ(RetryEintr([&] { return poll(&hung_up, 1, kReplyDeadlineMs); }), 1)
        << "B's connection is still open somewhere: the main process kept its copy?";
    ASSERT_TRUE(hung_up.revents & POLLHUP) << "B's worker sent something after B hung up";
    const std::map<int, std::string> held = OpenFdTargets(main);
    ASSERT_FALSE(held.empty());
    int sockets = 0;
    for (const auto& [n, target] : held) {
      sockets += target.rfind("socket:", 0) == 0 ? 1 : 0;
      EXPECT_NE(target, path) << "the main process holds A's file";
      EXPECT_NE(target, files_.Join("clean.txt")) << "the main process holds B's file";
    }
    EXPECT_EQ(sockets, 1) << "the main process holds client connections";

    // The stalled server goes: A's worker is freed and answers.
    fuse.reset();
    ASSERT_TRUE(WaitReadable(a->fd()));
    EXPECT_OK(a->Receive().status());
    stalling.reset();  // after the abort: this close asks no server
    // Both hang up; their workers end (so the next round counts its own).
    a.reset();
    b.reset();
    for (pid_t worker : workers) {
      ProcessWatch watch(worker);
      if (watch.valid()) {
        EXPECT_TRUE(watch.WaitExited()) << worker;
      }
    }
  }
}

TEST_F(ScannerWorkersTest, ServesAtMostFourConnectionsOfAUidAtOnceAndSaysWhy) {
  std::vector<std::optional<scanner::ScannerClient>> clients;
  std::vector<pid_t> workers;  // clients[i]'s
  pid_t main = 0;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back(std::in_place, Connect());
    ASSERT_OK(clients.back()->Info().status()) << i;
    if (main == 0) main = MainPid();
    std::set<pid_t> children = ChildrenOf(main);
    for (pid_t w : workers) children.erase(w);
    ASSERT_EQ(children.size(), 1u) << "no worker of its own for connection " << i;
    workers.push_back(*children.begin());
  }
  scanner::ScannerClient fifth(Connect());
  EXPECT_THAT(fifth.Info().status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr(absl::StrCat("at most 4 connections of uid ", getuid()))));
  // A slot frees when a client hangs up: its worker exits and is reaped
  // before the main process takes a connection that comes after the exit.
  ProcessWatch first(workers[0]);
  clients[0].reset();
  ASSERT_TRUE(first.WaitExited());
  scanner::ScannerClient sixth(Connect());
  EXPECT_OK(sixth.Info().status());
}

TEST_F(ScannerWorkersTest, WorkersOfClientsThatHungUpAreReaped) {
  std::vector<pid_t> workers;
  pid_t main = 0;
  {
    std::vector<scanner::ScannerClient> clients;
    for (int i = 0; i < 3; ++i) {
      clients.emplace_back(Connect());
      ASSERT_OK(clients.back().Scan(clean_.get()).status());
    }
    main = MainPid();
    std::set<pid_t> children = ChildrenOf(main);
    workers.assign(children.begin(), children.end());
    ASSERT_EQ(workers.size(), 3u);
  }
  for (pid_t worker : workers) {
    ProcessWatch watch(worker);
    // Not valid: reaped already.
    if (watch.valid()) {
      EXPECT_TRUE(watch.WaitExited()) << worker;
    }
  }
  // A connection that comes after those exits is taken after they are
  // reaped (the main process reaps first in a turn): once it is served,
  // no zombie may be left.
  scanner::ScannerClient late(Connect());
  ASSERT_OK(late.Info().status());
  std::set<pid_t> children = ChildrenOf(main);
  EXPECT_EQ(children.size(), 1u);
  for (pid_t worker : workers) EXPECT_EQ(children.count(worker), 0u) << worker;
  for (pid_t child : children) EXPECT_NE(StateOf(child), 'Z') << child;
}

// In a service that may have three processes, a third connection finds no
// worker (fork: EAGAIN at RLIMIT_NPROC): it is refused with the reason, and
// the scanner serves on. No closer could be started for it either: it
// waits in the main process until the workers' exits free a process for
// one, and goes to the closer before the next connection is taken (else
// that one would be refused as its uid's connections wait to be closed),
// which then gets the last process.
TEST_F(ScannerWorkersTest, AConnectionNoWorkerCanBeStartedForIsRefusedAndServingGoesOn) {
  std::optional<scanner::ScannerClient> first(std::in_place, Connect("scanner-small"));
  ASSERT_OK(first->Info().status());
  std::optional<scanner::ScannerClient> second(std::in_place, Connect("scanner-small"));
  ASSERT_OK(second->Info().status());
  std::set<pid_t> workers = ChildrenOf(MainPid("scanner-small"));
  ASSERT_EQ(workers.size(), 2u);
  scanner::ScannerClient refused(Connect("scanner-small"));
  EXPECT_THAT(refused.Info().status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("no worker process could be started for the connection: fork")));
  std::vector<ProcessWatch> watches;
  for (pid_t worker : workers) watches.emplace_back(worker);
  first.reset();
  second.reset();
  for (ProcessWatch& watch : watches) ASSERT_TRUE(watch.WaitExited());
  scanner::ScannerClient served(Connect("scanner-small"));
  EXPECT_OK(served.Scan(clean_.get()).status());
}

}  // namespace
}  // namespace capbroker

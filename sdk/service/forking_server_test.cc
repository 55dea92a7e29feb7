// ForkingServer in the test's process: the test steps the main loop over a
// FakeBroker and talks, through their connections, to the workers it forks.
#include "sdk/service/forking_server.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/fake_broker.h"
#include "sdk/service/fd_room.h"
#include "sdk/wire/channel.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/lingering_socket.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/syscall_filter.h"

namespace capbroker {
namespace {

using ::capbroker::testing::ExitCodeInChild;
using ::capbroker::testing::FakeBroker;
using ::capbroker::testing::LingeringSocket;
using ::capbroker::testing::OpenFdTargets;
using ::capbroker::testing::SyscallFilter;
using ::capbroker::testing::SyscallTrap;
using ::testing::HasSubstr;

// A toy protocol on the broker's message types: the Reply echoes the
// Request's id and names the worker that served it in its error message
// ("pid N"); it fails on a request of id kUnreadable, answers one of id
// kWithFd with a pipe's read end, and one of id kTooManyFds with more than a
// datagram carries (a service's bug, which the worker's send refuses). A
// request that carries an fd carries a pipe's read end, from which the
// handler first reads one byte: the client decides when that request ends,
// as one whose file lies on the client's own FUSE server does.
class WorkerHandler : public RequestHandler {
 public:
  // A request with this id is one the handler cannot read.
  static constexpr uint64_t kUnreadable = 666;
  // A request with this id is answered with an fd.
  static constexpr uint64_t kWithFd = 7;
  // A request with this id is answered with one fd more than a datagram
  // carries.
  static constexpr uint64_t kTooManyFds = 17;

  // Whether a refused connection gets a reply saying why.
  bool replies_to_refusals = false;

  bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) override {
    if (!replies_to_refusals) return false;
    reply.initRoot<schema::Reply>().initError().setMessage(std::string(refusal.message()));
    return true;
  }

  absl::Status Handle(Exchange& x) override {
    auto request = x.request.getRoot<schema::Request>();
    if (request.getId() == kUnreadable) return absl::InvalidArgumentError("unreadable");
    std::string read_note;
    if (!x.request_fds.empty()) {
      char byte = 0;
      ssize_t n = read(x.request_fds[0].get(), &byte, 1);
      read_note = absl::StrCat(" read ", n);
    }
    auto reply = x.reply.initRoot<schema::Reply>();
    reply.setId(request.getId());
    reply.initError().setMessage(absl::StrCat("pid ", getpid(), read_note));
    const size_t reply_fds = request.getId() == kWithFd       ? 1
                             : request.getId() == kTooManyFds ? wire::kMaxFdsPerMessage + 1
                                                              : 0;
    while (x.reply_fds.size() < reply_fds) {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
      x.reply_fds.emplace_back(p[0]);
      close(p[1]);
    }
    return absl::OkStatus();
  }
};

Peer PeerOfUid(uint32_t uid) { return Peer{absl::StrCat("user", uid), uid, uid, 4242}; }

// A connection from `peer`, which one turn of `server` takes.
absl::StatusOr<wire::Channel> Connect(FakeBroker& broker, ForkingServer& server,
                                      const Peer& peer) {
  CB_ASSIGN_OR_RETURN(UniqueFd end, broker.Connect(peer));
  CB_ASSIGN_OR_RETURN(bool serving, server.Turn(-1));
  if (!serving) return absl::UnavailableError("the server ended");
  return wire::Channel(std::move(end));
}

absl::Status Send(wire::Channel& client, uint64_t id, absl::Span<const int> fds = {}) {
  capnp::MallocMessageBuilder request;
  request.initRoot<schema::Request>().setId(id);
  return client.Send(request, fds);
}

// The next reply's message.
absl::StatusOr<std::string> Receive(wire::Channel& client) {
  CB_ASSIGN_OR_RETURN(wire::Incoming incoming, client.Receive());
  std::string message;
  CB_RETURN_IF_ERROR(CatchKj("reply", [&] {
    message = incoming.reader->getRoot<schema::Reply>().getError().getMessage();
    return absl::OkStatus();
  }));
  return message;
}

absl::StatusOr<std::string> Call(wire::Channel& client, uint64_t id,
                                 absl::Span<const int> fds = {}) {
  CB_RETURN_IF_ERROR(Send(client, id, fds));
  return Receive(client);
}

// A reply's message, or the status that stood in its place.
std::string Text(const absl::StatusOr<std::string>& reply) {
  return reply.ok() ? *reply : reply.status().ToString();
}

// The worker named in a reply ("pid N ...").
pid_t WorkerOf(const std::string& reply) {
  std::vector<std::string> words = absl::StrSplit(reply, ' ');
  int pid = 0;
  if (words.size() < 2 || words[0] != "pid" || !absl::SimpleAtoi(words[1], &pid)) return 0;
  return pid;
}

// A pipe whose read end a request carries: its handler waits until the
// test writes a byte.
struct Stall {
  Stall() {
    int ends[2] = {-1, -1};
    EXPECT_EQ(pipe2(ends, O_CLOEXEC), 0);
    read.reset(ends[0]);
    write.reset(ends[1]);
  }
  UniqueFd read;
  UniqueFd write;
};

// Whether `fd` becomes readable within `timeout_ms`.
bool Readable(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  int ready;
  do {
    ready = poll(&p, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  return ready == 1;
}

// How long a reply or an end of stream that should come at once may take
// before a test calls it missing: a safety net for a loaded machine.
constexpr int kSafetyMs = 10000;

// Waits for `client`'s refusal reply, then for the end of its connection.
void ExpectRefusedAndClosed(wire::Channel& client) {
  ASSERT_TRUE(Readable(client.fd(), kSafetyMs)) << "no refusal";
  EXPECT_THAT(Text(Receive(client)), HasSubstr("at most"));
  ASSERT_TRUE(Readable(client.fd(), kSafetyMs)) << "the refused connection stays open";
  EXPECT_THAT(Receive(client).status(), StatusIs(absl::StatusCode::kUnavailable));
}

// Whether `pid` has been reaped: it is no child of this process any more.
bool Reaped(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == -1 &&
         errno == ECHILD;
}

// The children of this thread, as the kernel lists them (zombies too).
std::set<pid_t> Children() {
  std::ifstream file(absl::StrCat("/proc/self/task/", gettid(), "/children"));
  std::set<pid_t> children;
  for (pid_t pid; file >> pid;) children.insert(pid);
  return children;
}

class ForkingServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
    broker_.emplace(std::move(broker));
  }

  // Options whose workers take the one fd a request may carry (a Stall's).
  static ForkingServer::Options TakingOneFd() {
    ForkingServer::Options options;
    options.worker_loop.max_request_fds = 1;
    return options;
  }

  void Start(ForkingServer::Options options = TakingOneFd()) {
    server_ = std::make_unique<ForkingServer>(broker_->client(), handler_, std::move(options));
  }

  absl::StatusOr<wire::Channel> Connect(uint32_t uid) {
    return capbroker::Connect(*broker_, *server_, PeerOfUid(uid));
  }

  // Turns the main loop until it has `n` workers; each turn waits for an
  // event (a worker's exit).
  absl::Status TurnUntilWorkers(size_t n) {
    while (server_->worker_count() != n) {
      CB_ASSIGN_OR_RETURN(bool serving, server_->Turn(-1));
      if (!serving) return absl::UnavailableError("the server ended");
    }
    return absl::OkStatus();
  }

  WorkerHandler handler_;
  std::optional<FakeBroker> broker_;
  std::unique_ptr<ForkingServer> server_;  // destroyed first: kills workers
};

TEST_F(ForkingServerTest, ServesEachConnectionInAWorkerOfItsOwn) {
  Start();
  ASSERT_OK_AND_ASSIGN(wire::Channel a, Connect(1000));
  ASSERT_OK_AND_ASSIGN(wire::Channel b, Connect(1001));
  ASSERT_OK_AND_ASSIGN(std::string first, Call(a, 1));
  ASSERT_OK_AND_ASSIGN(std::string second, Call(b, 2));
  ASSERT_OK_AND_ASSIGN(std::string again, Call(a, 3));
  const pid_t worker_a = WorkerOf(first);
  const pid_t worker_b = WorkerOf(second);
  EXPECT_GT(worker_a, 0);
  EXPECT_GT(worker_b, 0);
  EXPECT_NE(worker_a, getpid());
  EXPECT_NE(worker_a, worker_b);
  EXPECT_EQ(WorkerOf(again), worker_a);
  EXPECT_EQ(server_->worker_count(), 2u);
  EXPECT_EQ(server_->worker_count(1000), 1u);
  EXPECT_EQ(Children(), (std::set<pid_t>{worker_a, worker_b}));
}

TEST_F(ForkingServerTest, AClientThatStallsItsRequestStallsOnlyItsOwnWorker) {
  Start();
  Stall stall;
  ASSERT_OK_AND_ASSIGN(wire::Channel a, Connect(1000));
  ASSERT_OK(Send(a, 1, {stall.read.get()}));
  // A's worker now waits on the pipe. B, even of the same uid, is served.
  ASSERT_OK_AND_ASSIGN(wire::Channel b, Connect(1000));
  ASSERT_OK_AND_ASSIGN(std::string reply, Call(b, 2));
  EXPECT_THAT(reply, HasSubstr("pid "));
  EXPECT_FALSE(Readable(a.fd()));
  ASSERT_EQ(write(stall.write.get(), "x", 1), 1);
  ASSERT_OK_AND_ASSIGN(std::string stalled, Receive(a));
  EXPECT_THAT(stalled, HasSubstr(" read 1"));
}

TEST_F(ForkingServerTest, TheMainProcessNeverHoldsAClientsConnectionOrFds) {
  Start();
  ASSERT_OK_AND_ASSIGN(wire::Channel warm, Connect(999));  // the loop's own fds exist now
  const std::map<int, std::string> before = OpenFdTargets();
  ASSERT_OK_AND_ASSIGN(wire::Channel a, Connect(1000));
  std::map<int, std::string> added;
  for (const auto& [fd, target] : OpenFdTargets()) {
    if (before.count(fd) == 0) added[fd] = target;
  }
  // The test's end of the connection and the worker's pidfd; not the
  // service's end, which the main process closed after the fork.
  ASSERT_EQ(added.size(), 2u);
  EXPECT_THAT(added[a.fd()], HasSubstr("socket:"));
  added.erase(a.fd());
  EXPECT_EQ(added.begin()->second, "anon_inode:[pidfd]");

  Stall stall;
  const std::string pipe = OpenFdTargets()[stall.read.get()];
  ASSERT_OK(Send(a, 1, {stall.read.get()}));
  ASSERT_OK(server_->Turn(0).status());
  int copies = 0;
  for (const auto& [fd, target] : OpenFdTargets()) copies += target == pipe ? 1 : 0;
  EXPECT_EQ(copies, 2);  // the test's own two ends
  ASSERT_EQ(write(stall.write.get(), "x", 1), 1);
  ASSERT_OK(Receive(a).status());
}

TEST_F(ForkingServerTest, AWorkerHoldsItsOwnConnectionAndNothingElse) {
  Start();
  ASSERT_OK_AND_ASSIGN(wire::Channel a, Connect(1000));
  ASSERT_OK_AND_ASSIGN(wire::Channel b, Connect(1001));
  ASSERT_OK_AND_ASSIGN(std::string reply, Call(b, 1));
  std::map<int, std::string> held = OpenFdTargets(WorkerOf(reply));
  held.erase(0);
  held.erase(1);
  held.erase(2);
  // Its connection and its loop's epoll: not the broker connection, not
  // A's connection, not the main process's pidfds or this test's fds.
  std::multiset<std::string> kinds;
  for (const auto& [fd, target] : held) kinds.insert(target.substr(0, target.find('[')));
  EXPECT_EQ(kinds, (std::multiset<std::string>{"anon_inode:", "socket:"})) << held.size();
}

// What a child holds when the main process goes on, and what the main
// process holds then (Options::child_set_up_for_test).
struct FdsAtStart {
  std::map<int, std::string> child;
  std::map<int, std::string> main;
};

// The kinds ("socket:", "anon_inode:", "pipe:") of what `fds` holds but 0,
// 1 and 2; with `shared_with`, only of what it holds too.
std::multiset<std::string> KindsHeld(const std::map<int, std::string>& fds,
                                     const std::map<int, std::string>* shared_with = nullptr) {
  std::set<std::string> others;
  if (shared_with != nullptr) {
    for (const auto& [fd, target] : *shared_with) others.insert(target);
  }
  std::multiset<std::string> kinds;
  for (const auto& [fd, target] : fds) {
    if (fd <= 2 || (shared_with != nullptr && others.count(target) == 0)) continue;
    kinds.insert(target.substr(0, target.find('[')));
  }
  return kinds;
}

// A worker or closer has closed every fd it inherited but its keep-set
// before the main process goes on: a copy it held on to (another client's
// connection, parked or queued in the Client; the broker connection) could
// make its close, not the main process's, the last of that connection,
// which runs the release of what its client queued in it (child_gate.h).
// Seen by a hook the main process calls then, with the child waiting at
// its gate.
TEST_F(ForkingServerTest, AChildHoldsNothingItInheritedWhenTheMainProcessGoesOn) {
  handler_.replies_to_refusals = true;
  ForkingServer::Options options = TakingOneFd();
  options.max_workers_per_uid = 1;
  std::vector<FdsAtStart> starts;
  options.child_set_up_for_test = [&starts](pid_t pid) {
    starts.push_back(FdsAtStart{OpenFdTargets(pid), OpenFdTargets()});
  };
  Start(std::move(options));
  // Three connections at once: while the first's worker starts, the others
  // wait in the main process (in the Client's queue or its broker socket),
  // and so they do while the second's worker starts. The third, over the
  // uid's cap, is refused and starts the closer.
  ASSERT_OK_AND_ASSIGN(UniqueFd a, broker_->Connect(PeerOfUid(1000)));
  ASSERT_OK_AND_ASSIGN(UniqueFd b, broker_->Connect(PeerOfUid(1001)));
  ASSERT_OK_AND_ASSIGN(UniqueFd c, broker_->Connect(PeerOfUid(1000)));
  while (starts.size() < 3) {
    ASSERT_OK_AND_ASSIGN(bool serving, server_->Turn(-1));
    ASSERT_TRUE(serving);
  }
  ASSERT_EQ(starts.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(absl::StrCat("worker ", i));
    // Its connection and its end of the gate.
    EXPECT_EQ(KindsHeld(starts[i].child), (std::multiset<std::string>{"socket:", "pipe:"}));
    // Of what the main process holds, its connection alone (whose copy the
    // main process closes next) and the gate's open pipe (one inode, whose
    // other end the main process closes to open the gate).
    EXPECT_EQ(KindsHeld(starts[i].child, &starts[i].main),
              (std::multiset<std::string>{"socket:", "pipe:"}));
  }
  // The closer: its end of its socket and its end of the gate; of what the
  // main process holds, the gate's open pipe alone.
  EXPECT_EQ(KindsHeld(starts[2].child), (std::multiset<std::string>{"socket:", "pipe:"}));
  EXPECT_EQ(KindsHeld(starts[2].child, &starts[2].main), std::multiset<std::string>{"pipe:"});
}

// What a gate test's child does (0: all as expected), the first worker it
// starts failing to (the test's trap): that worker is killed and reaped,
// its connection refused saying why (`why`, the child's pid, then
// `then`) and handed to a closer, and the next connection is served.
int RefuseWhenAWorkerCannotStart(absl::string_view why, absl::string_view then) {
  WorkerHandler handler;
  handler.replies_to_refusals = true;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  ForkingServer server(broker->client(), handler, ForkingServer::Options());
  absl::StatusOr<wire::Channel> refused = Connect(*broker, server, PeerOfUid(1000));
  if (!refused.ok()) return 11;
  absl::StatusOr<std::string> refusal = Receive(*refused);
  const std::string prefix =
      absl::StrCat("no worker process could be started for the connection: ", why);
  const size_t digits = prefix.size();
  const size_t after = refusal.ok() ? refusal->find(' ', digits) : std::string::npos;
  int killed = 0;
  if (!refusal.ok() || refusal->find(prefix) != 0 || after == std::string::npos ||
      !absl::SimpleAtoi(refusal->substr(digits, after - digits), &killed) || killed <= 0 ||
      refusal->find(std::string(then), after) != after ||
      refusal->find(absl::StrCat("(child ", killed, " killed)")) == std::string::npos) {
    std::fprintf(stderr, "refusal: %s\n", Text(refusal).c_str());
    return 12;
  }
  if (!Reaped(killed)) return 14;
  if (server.worker_count() != 0) return 15;
  // The closer (its gate as usual) took the refused connection.
  if (!Readable(refused->fd(), kSafetyMs) ||
      Receive(*refused).status().code() != absl::StatusCode::kUnavailable) {
    return 16;
  }
  absl::StatusOr<wire::Channel> served = Connect(*broker, server, PeerOfUid(1000));
  if (!served.ok()) return 17;
  absl::StatusOr<std::string> reply = Call(*served, 1);
  if (!reply.ok() || WorkerOf(*reply) <= 0 || WorkerOf(*reply) == killed) {
    std::fprintf(stderr, "not served: %s\n", Text(reply).c_str());
    return 18;
  }
  return 0;
}

// Whose trapped call fails.
enum class FailedCaller { kMainProcess, kChild };

// Runs `body` in a child of this process under a seccomp trap on system
// call `nr` when its argument `arg` is `value`, which this process answers:
// `errnum` for the first trapped call `caller` makes (the child itself, or
// one of its own children), on as usual for every other. Expects one call
// failed and `body` to return 0 (12: no refusal, or another; 14: the killed
// child was not reaped; 18: the next connection was not served).
void ExpectZeroWithOneCallFailed(int nr, int arg, uint32_t value, int errnum, FailedCaller caller,
                                 absl::FunctionRef<int()> body) {
  int channel[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel), 0);
  UniqueFd trap_end(channel[0]);
  UniqueFd child_end(channel[1]);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(kSafetyMs / 1000);
    const int listener = SyscallFilter(nr, arg, value, SECCOMP_RET_USER_NOTIF).Install(true);
    if (listener < 0 || !SyscallTrap::SendListener(child_end.get(), listener)) _exit(9);
    close(listener);
    child_end.reset();
    _exit(body());
  }
  child_end.reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  ASSERT_TRUE(pidfd.valid()) << strerror(errno);
  absl::StatusOr<SyscallTrap> trap = SyscallTrap::ReceiveListener(trap_end.get());
  bool failed_one = false;
  // Until the child has exited: its children go with it (the server kills
  // them, or PR_SET_PDEATHSIG).
  while (trap.ok()) {
    absl::StatusOr<SyscallTrap::Call> call = trap->NextCall(pidfd.get());
    if (!call.ok()) break;
    absl::Status answered;
    if (!failed_one && (call->pid == pid) == (caller == FailedCaller::kMainProcess)) {
      answered = trap->Fail(call->id, errnum);
      failed_one = true;
    } else {
      answered = trap->Continue(call->id);
    }
    if (!answered.ok() && answered.code() != absl::StatusCode::kNotFound) {
      ADD_FAILURE() << answered;
      kill(pid, SIGKILL);
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_OK(trap.status());
  EXPECT_TRUE(failed_one) << "no call was trapped";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
}

// When the main process's read of a child's gate fails, it cannot tell
// whether the child has shed what it inherited: the child is killed and
// reaped, the connection refused, and serving goes on. The read fails by a
// trap on read(_, _, 1) (the gates' reads, one byte at a time): EIO for
// the main process's first.
TEST(ForkingServerGateTest, AChildTheMainProcessCannotWaitForIsKilledAndServingGoesOn) {
  ExpectZeroWithOneCallFailed(SYS_read, 2, 1, EIO, FailedCaller::kMainProcess, [] {
    return RefuseWhenAWorkerCannotStart("cannot wait for child ",
                                        " to set itself up: read(gate, fd=");
  });
}

// A worker whose setup fails (its prctl(PR_SET_PDEATHSIG) refused, as a
// seccomp filter may) is killed and reaped, never counted as a worker; its
// connection is refused saying why, and serving goes on.
TEST(ForkingServerGateTest, AWorkerWhoseSetUpFailsIsKilledItsConnectionRefusedAndServingGoesOn) {
  ExpectZeroWithOneCallFailed(SYS_prctl, 0, PR_SET_PDEATHSIG, EPERM, FailedCaller::kChild, [] {
    return RefuseWhenAWorkerCannotStart(
        "child ",
        " failed to set itself up: prctl(PR_SET_PDEATHSIG, SIGKILL): Operation not permitted");
  });
}

// A service whose sandbox refuses prctl(PR_SET_PDEATHSIG) could start no
// worker: the check at its start (before it says ready) fails, naming the
// call and what to allow. Allowed, the check leaves SIGKILL set.
TEST(ForkingServerStartCheckTest, FailsWhenTheSandboxRefusesTheParentDeathSignal) {
  EXPECT_EQ(ExitCodeInChild([] {
              if (SyscallFilter(SYS_prctl, 0, PR_SET_PDEATHSIG, SECCOMP_RET_ERRNO | EPERM)
                      .Install(false) != 0) {
                return 10;
              }
              absl::Status checked = ForkingServer::CheckChildrenCanSetUp();
              if (checked.message() !=
                  "prctl(PR_SET_PDEATHSIG, SIGKILL): Operation not permitted: the sandbox's "
                  "system call filter must allow it (services/README.md, \"What the sandbox "
                  "must allow\")") {
                std::fprintf(stderr, "check: %s\n", checked.ToString().c_str());
                return 11;
              }
              return 0;
            }),
            0);
  EXPECT_EQ(ExitCodeInChild([] {
              if (!ForkingServer::CheckChildrenCanSetUp().ok()) return 10;
              int signal = 0;
              if (prctl(PR_GET_PDEATHSIG, &signal) != 0 || signal != SIGKILL) return 11;
              return 0;
            }),
            0);
}

// Workers need no socket of their own: a service whose seccomp filter
// refuses socketpair(AF_UNIX) (restrictAddressFamilies without unix) still
// starts them. Its connections come from the broker, made before.
TEST(ForkingServerFilterTest, StartsWorkersUnderAFilterThatRefusesUnixSocketpairs) {
  EXPECT_EQ(ExitCodeInChild([] {
              WorkerHandler handler;
              // A refusal says why, rather than leave the client waiting (no
              // closer can start under this filter).
              handler.replies_to_refusals = true;
              absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
              if (!broker.ok()) return 10;
              ForkingServer server(broker->client(), handler, ForkingServer::Options());
              absl::StatusOr<UniqueFd> end = broker->Connect(PeerOfUid(1000));
              if (!end.ok()) return 11;
              if (SyscallFilter(SYS_socketpair, 0, AF_UNIX,
                                SECCOMP_RET_ERRNO | EAFNOSUPPORT)
                      .Install(false) != 0) {
                return 12;
              }
              absl::StatusOr<bool> serving = server.Turn(-1);
              if (!serving.ok() || !*serving) return 13;
              wire::Channel client(std::move(*end));
              absl::StatusOr<std::string> reply = Call(client, 1);
              if (!reply.ok()) {
                std::fprintf(stderr, "no reply: %s\n", reply.status().ToString().c_str());
                return 14;
              }
              // Served by a worker, not refused.
              const pid_t worker = WorkerOf(*reply);
              if (worker > 0 && worker != getpid()) return 0;
              std::fprintf(stderr, "not served: %s\n", reply->c_str());
              return 15;
            }),
            0);
}

// A worker logs nothing its client causes: a client could open connection
// after connection, each worker with a log budget of its own. The main
// process logs it, within its one budget.
TEST_F(ForkingServerTest, AWorkerClosedForWhatItsClientSentIsLoggedByTheMainProcess) {
  Start();
  ::testing::internal::CaptureStderr();
  for (uint32_t uid : {1000, 1001, 1002}) {
    absl::StatusOr<wire::Channel> bad = Connect(uid);
    ASSERT_OK(bad.status());
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    ASSERT_EQ(testing::RawSend(bad->fd(), junk), 0);
    EXPECT_THAT(Receive(*bad).status(), StatusIs(absl::StatusCode::kUnavailable));
  }
  absl::Status reaped = TurnUntilWorkers(0);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(reaped);
  EXPECT_THAT(logged, ::testing::Not(HasSubstr("closed the connection of")));
  std::vector<std::string> lines = absl::StrSplit(logged, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << logged;
  for (const std::string& line : lines) {
    EXPECT_THAT(line, ::testing::MatchesRegex(
                          "the worker \\(pid [0-9]+\\) of principal 'user100[0-2]' .* closed "
                          "the connection for what its client sent: .*"));
  }
}

// The main process's line says what the client sent, or that the reply
// could not be sent, as the worker's exit code tells it.
TEST_F(ForkingServerTest, TheMainProcessSaysWhatAWorkersClientSent) {
  Start();  // requests may carry one fd
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};  // a bad segment table
  const std::vector<uint8_t> huge(wire::kMaxMessageBytes + 8);
  capnp::MallocMessageBuilder message;
  message.initRoot<schema::Request>().setId(WorkerHandler::kUnreadable);
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> unreadable, wire::Flatten(message));
  capnp::MallocMessageBuilder asking_for_an_fd;
  asking_for_an_fd.initRoot<schema::Request>().setId(WorkerHandler::kWithFd);
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> with_fd, wire::Flatten(asking_for_an_fd));
  capnp::MallocMessageBuilder asking_for_too_many;
  asking_for_too_many.initRoot<schema::Request>().setId(WorkerHandler::kTooManyFds);
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> too_many, wire::Flatten(asking_for_too_many));
  Stall stall;
  const int two_fds[] = {stall.read.get(), stall.write.get()};
  struct Case {
    absl::Span<const uint8_t> bytes;
    absl::Span<const int> fds;
    std::string said;
    bool refuses_fds = false;  // the client's socket refuses fds (SO_PASSRIGHTS off)
    std::string why = "for what its client sent";
  };
  const Case cases[] = {
      {junk, {}, "a datagram that is not a well-framed message"},
      {absl::MakeConstSpan(unreadable.asBytes().begin(), unreadable.asBytes().size()), two_fds,
       "a request with fds this service takes none of, or more than it takes"},
      {huge, {}, "a datagram that could not be received whole"},
      {absl::MakeConstSpan(unreadable.asBytes().begin(), unreadable.asBytes().size()), {},
       "a request its handler could not read"},
      {absl::MakeConstSpan(with_fd.asBytes().begin(), with_fd.asBytes().size()), {},
       "a socket that refuses fds (SO_PASSRIGHTS off), where the reply to its request carries "
       "some",
       true},
      // Not the client's doing here, but a kernel's refusal that a client
      // can cause (ETOOMANYREFS) takes the same way: the exit code.
      {absl::MakeConstSpan(too_many.asBytes().begin(), too_many.asBytes().size()), {},
       "one too large or with more fds than a datagram carries (the service's bug), or one the "
       "kernel refused (ETOOMANYREFS: the fds in flight from the service's uid, in replies its "
       "clients do not read, over its open-file limit)",
       false, "as its reply could not be sent"},
  };
  uint32_t uid = 1000;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.said);
    if (c.refuses_fds && !testing::KernelCanRefuseFds()) continue;  // Linux 6.16
    ::testing::internal::CaptureStderr();
    absl::StatusOr<wire::Channel> bad = Connect(uid++);
    ASSERT_OK(bad.status());
    if (c.refuses_fds) {
      ASSERT_OK(wire::RefuseFds(bad->fd()));
    }
    ASSERT_EQ(testing::RawSend(bad->fd(), c.bytes, c.fds), 0);
    EXPECT_THAT(Receive(*bad).status(), StatusIs(absl::StatusCode::kUnavailable));
    absl::Status reaped = TurnUntilWorkers(0);
    const std::string logged = ::testing::internal::GetCapturedStderr();
    ASSERT_OK(reaped);
    EXPECT_THAT(logged, HasSubstr("closed the connection " + c.why + ": " + c.said)) << logged;
    EXPECT_THAT(logged, ::testing::Not(HasSubstr("cannot answer"))) << "the worker's own line";
  }
}

TEST_F(ForkingServerTest, CapsWorkersPerUidAndInAll) {
  ForkingServer::Options options;
  options.max_workers_per_uid = 2;
  options.max_workers = 3;
  handler_.replies_to_refusals = true;
  Start(options);
  std::optional<wire::Channel> first;
  ASSERT_OK_AND_ASSIGN(first, Connect(1000));
  ASSERT_OK_AND_ASSIGN(wire::Channel second, Connect(1000));
  ASSERT_OK_AND_ASSIGN(wire::Channel third, Connect(1000));
  // Refused with a reply that says why, then closed.
  EXPECT_THAT(Text(Receive(third)), HasSubstr("at most 2 connections of uid 1000 at once"));
  EXPECT_THAT(Receive(third).status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(server_->worker_count(1000), 2u);
  ASSERT_OK_AND_ASSIGN(wire::Channel other, Connect(1001));
  ASSERT_OK(Call(other, 1).status());
  ASSERT_OK_AND_ASSIGN(wire::Channel over_total, Connect(1002));
  EXPECT_THAT(Text(Receive(over_total)), HasSubstr("at most 3 connections at once"));
  EXPECT_EQ(server_->worker_count(), 3u);
  // A worker that ends frees its slot.
  first.reset();
  ASSERT_OK(TurnUntilWorkers(2));
  ASSERT_OK_AND_ASSIGN(wire::Channel fourth, Connect(1000));
  ASSERT_OK(Call(fourth, 2).status());
  ASSERT_OK(Call(second, 3).status());
}

TEST_F(ForkingServerTest, WithoutARefusalReplyARefusedConnectionIsJustClosed) {
  ForkingServer::Options options;
  options.max_workers_per_uid = 1;
  Start(options);
  ASSERT_OK_AND_ASSIGN(wire::Channel served, Connect(1000));
  ASSERT_OK_AND_ASSIGN(wire::Channel refused, Connect(1000));
  EXPECT_THAT(Receive(refused).status(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(Call(served, 1).status());
}

// Options under which every connection is refused.
ForkingServer::Options RefusingAll() {
  ForkingServer::Options options;
  options.max_workers_per_uid = 0;
  return options;
}

TEST_F(ForkingServerTest, ARefusedConnectionGoesToACloserThatHoldsNothingElse) {
  handler_.replies_to_refusals = true;
  Start(RefusingAll());
  // The first refusal starts the closer.
  ASSERT_OK_AND_ASSIGN(wire::Channel first, Connect(1000));
  ExpectRefusedAndClosed(first);
  const std::set<pid_t> children = Children();
  ASSERT_EQ(children.size(), 1u) << "no closer";
  const pid_t closer = *children.begin();
  std::map<int, std::string> held = OpenFdTargets(closer);
  held.erase(0);
  held.erase(1);
  held.erase(2);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_THAT(held.begin()->second, HasSubstr("socket:"));

  // A second one, whose client queued an fd in it: after the turn that
  // refuses it, the main process holds neither.
  const std::map<int, std::string> before = OpenFdTargets();
  Stall stall;
  const std::string pipe = OpenFdTargets()[stall.read.get()];
  ASSERT_OK_AND_ASSIGN(UniqueFd end, broker_->Connect(PeerOfUid(1000)));
  wire::Channel second(std::move(end));
  ASSERT_OK(Send(second, 1, {stall.read.get()}));
  ASSERT_OK_AND_ASSIGN(bool serving, server_->Turn(-1));
  ASSERT_TRUE(serving);
  std::map<int, std::string> added;
  for (const auto& [fd, target] : OpenFdTargets()) {
    if (before.count(fd) == 0) added[fd] = target;
  }
  // The test's end of the connection and its pipe.
  EXPECT_EQ(added.size(), 3u);
  added.erase(second.fd());
  added.erase(stall.read.get());
  added.erase(stall.write.get());
  EXPECT_TRUE(added.empty()) << added.begin()->second;
  ExpectRefusedAndClosed(second);
  EXPECT_EQ(Children(), children);
}

TEST_F(ForkingServerTest, AStuckCloserIsKilledReapedAndReplaced) {
  handler_.replies_to_refusals = true;
  Start(RefusingAll());
  ASSERT_OK_AND_ASSIGN(wire::Channel first, Connect(1000));
  ExpectRefusedAndClosed(first);
  ASSERT_EQ(Children().size(), 1u) << "no closer";
  const pid_t stuck = *Children().begin();
  // A closer that takes nothing more, as one stuck in a close would.
  ASSERT_EQ(kill(stuck, SIGSTOP), 0);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(stuck), &info, WSTOPPED | WNOWAIT), 0);
  // Refused connections fill its socket (about 20 wait); the
  // one that finds it full goes to a new closer.
  std::vector<wire::Channel> refused;
  for (int i = 0; i < 100 && Children().count(stuck) != 0; ++i) {
    ASSERT_OK_AND_ASSIGN(wire::Channel c, Connect(1000));
    refused.push_back(std::move(c));
  }
  EXPECT_TRUE(Reaped(stuck));
  const std::set<pid_t> children = Children();
  ASSERT_EQ(children.size(), 1u) << "no new closer, or a zombie";
  EXPECT_NE(*children.begin(), stuck);
  EXPECT_GT(refused.size(), 1u);
  // Each was refused and closed: those that waited in the stuck closer's
  // socket as it died, the last by the new closer.
  for (wire::Channel& c : refused) ExpectRefusedAndClosed(c);
  ASSERT_OK_AND_ASSIGN(wire::Channel after, Connect(1000));
  ExpectRefusedAndClosed(after);
  EXPECT_EQ(Children(), children);
}

// The main process never closes a refused connection itself while it
// serves: that last close can wait on what its client queued in it (see
// forking_server.h). With no closer to take it, the connection waits
// (parked); its uid's next connections are refused and wait too; with
// kMaxParked waiting the server takes no new connection.
TEST_F(ForkingServerTest, WithoutACloserARefusedConnectionWaitsAndIsNotClosedByTheMainProcess) {
  ForkingServer::Options options = RefusingAll();
  options.max_closers = 0;
  handler_.replies_to_refusals = true;
  Start(options);
  ASSERT_OK_AND_ASSIGN(wire::Channel refused, Connect(1000));
  EXPECT_THAT(Text(Receive(refused)), HasSubstr("at most 0 connections of uid 1000"));
  EXPECT_FALSE(Readable(refused.fd())) << "the main process closed the refused connection";
  std::vector<wire::Channel> waiting;
  for (size_t i = 1; i < ForkingServer::kMaxParked; ++i) {
    ASSERT_OK_AND_ASSIGN(wire::Channel next, Connect(1000));
    EXPECT_THAT(Text(Receive(next)),
                HasSubstr(absl::StrCat(i, " refused connections of uid 1000 wait to be closed")));
    EXPECT_FALSE(Readable(next.fd()));
    waiting.push_back(std::move(next));
  }
  // The park is full: the next connection is not taken.
  ASSERT_OK_AND_ASSIGN(UniqueFd untaken_end, broker_->Connect(PeerOfUid(1001)));
  wire::Channel untaken(std::move(untaken_end));
  ASSERT_OK_AND_ASSIGN(bool serving, server_->Turn(0));
  EXPECT_TRUE(serving);
  EXPECT_FALSE(Readable(untaken.fd())) << "taken although kMaxParked connections wait";
  EXPECT_EQ(Children(), std::set<pid_t>());
}

// More connections queued than the park holds, all refused: the turns
// take only as many as may wait, each with an fd of the reserve.
TEST_F(ForkingServerTest, TakesNoMoreConnectionsThanThePark) {
  ForkingServer::Options options = RefusingAll();
  options.max_closers = 0;
  handler_.replies_to_refusals = true;
  Start(options);
  std::vector<wire::Channel> clients;
  for (size_t i = 0; i < ForkingServer::kMaxParked + 4; ++i) {
    ASSERT_OK_AND_ASSIGN(UniqueFd end, broker_->Connect(PeerOfUid(1000)));
    clients.emplace_back(std::move(end));
  }
  for (int turn = 0; turn < 2; ++turn) {
    ASSERT_OK_AND_ASSIGN(bool serving, server_->Turn(0));
    ASSERT_TRUE(serving);
  }
  // Each refused connection has its reply by now (sent in the turn); the
  // others have nothing.
  size_t refused = 0;
  for (wire::Channel& c : clients) refused += Readable(c.fd()) ? 1 : 0;
  EXPECT_EQ(refused, ForkingServer::kMaxParked);
}

TEST_F(ForkingServerTest, WorkersAreReapedOnceTheirClientsHangUp) {
  Start();
  std::vector<pid_t> workers;
  {
    std::vector<wire::Channel> clients;
    for (uint32_t uid : {1000, 1000, 1001}) {
      ASSERT_OK_AND_ASSIGN(wire::Channel c, Connect(uid));
      ASSERT_OK_AND_ASSIGN(std::string reply, Call(c, 1));
      workers.push_back(WorkerOf(reply));
      clients.push_back(std::move(c));
    }
    EXPECT_EQ(Children(), std::set<pid_t>(workers.begin(), workers.end()));
  }
  ASSERT_OK(TurnUntilWorkers(0));
  for (pid_t pid : workers) EXPECT_TRUE(Reaped(pid)) << pid;
  EXPECT_EQ(Children(), std::set<pid_t>());
}

TEST_F(ForkingServerTest, WhenTheBrokerGoesWorkersAreKilledAndReaped) {
  Start();
  Stall stall;
  ASSERT_OK_AND_ASSIGN(wire::Channel idle, Connect(1000));
  ASSERT_OK_AND_ASSIGN(std::string reply, Call(idle, 1));
  ASSERT_OK_AND_ASSIGN(wire::Channel busy, Connect(1001));
  ASSERT_OK(Send(busy, 2, {stall.read.get()}));
  broker_->Close();
  ASSERT_OK_AND_ASSIGN(bool serving, server_->Turn(-1));
  EXPECT_FALSE(serving);
  server_.reset();
  EXPECT_TRUE(Reaped(WorkerOf(reply)));
  EXPECT_EQ(Children(), std::set<pid_t>());
  EXPECT_THAT(Receive(busy).status(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ForkingServerReadyTest, TakesConnectionsQueuedWhileSayingReady) {
  // Events that come while the Client waits for a reply (here its ready's,
  // as brokers once sent them) are queued there: the fd shows nothing.
  WorkerHandler handler;
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  ASSERT_OK_AND_ASSIGN(UniqueFd end, broker.Connect(PeerOfUid(1000)));
  ASSERT_OK(broker.AnswerReady());
  ASSERT_OK(broker.client().Ready());
  ForkingServer server(broker.client(), handler, ForkingServer::Options());
  ASSERT_OK_AND_ASSIGN(bool serving, server.Turn(0));
  EXPECT_TRUE(serving);
  EXPECT_EQ(server.worker_count(), 1u);
  wire::Channel client(std::move(end));
  EXPECT_THAT(Text(Call(client, 1)), HasSubstr("pid "));
}

TEST(ForkingServerReadyTest, TakesConnectionsQueuedDuringACallBetweenTurns) {
  // The main process calls the broker while the server runs (its workers
  // cannot: they hold no broker connection); a connection made meanwhile
  // is read into the Client's queue, and the fd shows nothing more.
  WorkerHandler handler;
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  ASSERT_OK(broker.AnswerReady());
  ASSERT_OK(broker.client().Ready());
  ForkingServer server(broker.client(), handler, ForkingServer::Options());
  ASSERT_OK_AND_ASSIGN(bool serving, server.Turn(0));
  ASSERT_TRUE(serving);
  ASSERT_OK_AND_ASSIGN(std::vector<UniqueFd> ends, broker.ConnectDuringACall(1, 64));
  ASSERT_EQ(broker.client().queued_incoming(), 1u);
  // Nothing more comes from the broker: the next turn takes it without
  // waiting. The timeout is a liveness bound (the old turn waited it out,
  // and Run for ever), not a speed check.
  ASSERT_OK_AND_ASSIGN(serving, server.Turn(10'000));
  ASSERT_TRUE(serving);
  ASSERT_EQ(server.worker_count(), 1u);
  wire::Channel client(std::move(ends[0]));
  EXPECT_THAT(Text(Call(client, 1)), HasSubstr("pid "));
}

TEST(ForkingServerRefusalTest, ASocketLingeringInARefusedConnectionStallsNoOtherClient) {
  // Longer than kSafetyMs, which a stalled main process misses; a correct
  // one answers at once.
  constexpr int kLingerSeconds = 60;
  WorkerHandler handler;
  handler.replies_to_refusals = true;
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  // Everything is queued before the server runs, in the order it takes
  // it: uid 1000 fills its 4 slots, then a fifth connection of uid 1000,
  // refused, in which its client queued a socket that lingers on close
  // (its own copies closed: the connection holds the last reference), then
  // a connection of uid 1001 with a request.
  std::vector<UniqueFd> slots;
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(UniqueFd end, broker.Connect(PeerOfUid(1000)));
    slots.push_back(std::move(end));
  }
  ASSERT_OK_AND_ASSIGN(UniqueFd refused_end, broker.Connect(PeerOfUid(1000)));
  wire::Channel refused(std::move(refused_end));
  ASSERT_OK_AND_ASSIGN(LingeringSocket lingering, LingeringSocket::Make(kLingerSeconds));
  ASSERT_OK(Send(refused, 1, {lingering.wrapper()}));
  lingering.Release();
  ASSERT_OK_AND_ASSIGN(UniqueFd other_end, broker.Connect(PeerOfUid(1001)));
  wire::Channel other(std::move(other_end));
  ASSERT_OK(Send(other, 2));

  // The server runs in a child, so that this test sees whether it stalls;
  // its workers and closer die with it.
  const pid_t server = fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    ForkingServer forking(broker.client(), handler, ForkingServer::Options());
    absl::Status ran = forking.Run();
    if (!ran.ok()) std::fprintf(stderr, "the server ended: %s\n", ran.ToString().c_str());
    _exit(ran.ok() ? 0 : 1);
  }
  absl::Cleanup stop_server = [server] {
    kill(server, SIGKILL);
    waitpid(server, nullptr, 0);
  };
  ASSERT_TRUE(Readable(other.fd(), kSafetyMs))
      << "no reply within " << kSafetyMs
      << " ms: the main process is stuck closing a refused connection";
  EXPECT_THAT(Text(Receive(other)), HasSubstr("pid "));
  // The refused client got its reply, and the end of its connection.
  ExpectRefusedAndClosed(refused);
}

// The close of a parked connection can block past SIGKILL (see
// forking_server.h): destruction kills the workers before it closes one,
// so that no worker serves on once the service has been told to stop.
TEST(ForkingServerRefusalTest, DestructionKillsTheWorkersBeforeItClosesAParkedConnection) {
  // Longer than kSafetyMs, which a worker killed only after that close
  // misses.
  constexpr int kLingerSeconds = 60;
  WorkerHandler handler;
  handler.replies_to_refusals = true;
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  // Queued before the server runs: a connection of uid 1000, served, then
  // one of uid 1000 beyond its one slot, refused, in which its client
  // queued a socket that lingers on close; no closer takes it (none may
  // run), so it is parked.
  ASSERT_OK_AND_ASSIGN(UniqueFd served_end, broker.Connect(PeerOfUid(1000)));
  wire::Channel served(std::move(served_end));
  ASSERT_OK_AND_ASSIGN(UniqueFd parked_end, broker.Connect(PeerOfUid(1000)));
  wire::Channel parked(std::move(parked_end));
  ASSERT_OK_AND_ASSIGN(LingeringSocket lingering, LingeringSocket::Make(kLingerSeconds));
  ASSERT_OK(Send(parked, 1, {lingering.wrapper()}));
  lingering.Release();

  // The server runs in a child, whose destruction this test watches.
  const pid_t server = fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    broker.Close();  // this test's copy ends the service
    ForkingServer::Options options;
    options.max_workers_per_uid = 1;
    options.max_closers = 0;
    {
      ForkingServer forking(broker.client(), handler, options);
      absl::Status ran = forking.Run();
      if (!ran.ok()) std::fprintf(stderr, "the server ended: %s\n", ran.ToString().c_str());
    }
    _exit(0);
  }
  absl::Cleanup stop_server = [server] {
    kill(server, SIGKILL);  // ends a linger wait
    waitpid(server, nullptr, 0);
  };
  EXPECT_THAT(Text(Call(served, 2)), HasSubstr("pid "));
  EXPECT_THAT(Text(Receive(parked)), HasSubstr("at most 1 connections of uid 1000"));
  broker.Close();
  ASSERT_TRUE(Readable(served.fd(), kSafetyMs))
      << "the worker still serves " << kSafetyMs
      << " ms after the service was told to stop: destruction closes the parked connection first";
  EXPECT_THAT(Receive(served).status(), StatusIs(absl::StatusCode::kUnavailable));
}

// Answers each request with whether the worker that serves it is dumpable
// (prctl(PR_GET_DUMPABLE)): "dumpable N".
class DumpableHandler : public RequestHandler {
 public:
  absl::Status Handle(Exchange& x) override {
    auto reply = x.reply.initRoot<schema::Reply>();
    reply.setId(x.request.getRoot<schema::Request>().getId());
    reply.initError().setMessage(absl::StrCat("dumpable ", prctl(PR_GET_DUMPABLE)));
    return absl::OkStatus();
  }
};

// Every worker is a fork of the same program, under the same uid, and sees
// the others in its /proc: were it dumpable, a worker compromised by what
// its client sent could open a sibling's /proc/PID/mem (seccomp stops
// ptrace and process_vm_readv, not open) and read another client's files.
TEST(ForkingServerIsolationTest, WorkersAreNotDumpable) {
  DumpableHandler handler;
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  ForkingServer server(broker.client(), handler, ForkingServer::Options());
  ASSERT_OK_AND_ASSIGN(wire::Channel client, Connect(broker, server, PeerOfUid(1000)));
  EXPECT_EQ(Text(Call(client, 1)), "dumpable 0");
}

// The tests that run as a uid of their own, whose uids differ.
enum class OwnUid { kMemoryRead = 0, kForkFails = 1, kNoCloser = 2 };

// Has this process (a test's child) run as a uid that no other process
// has: RLIMIT_NPROC counts the processes of a uid, and the fork tests' limits
// leave room for their own processes only. Runs of one test at once
// (--runs_per_test, other checkouts: the test runs unsandboxed, so all share
// the host's uids) and another test's children still alive would otherwise
// count against each other. The uid comes from `test` and this process's
// pid, which no other live process has. An error when no uid can be
// switched to (a user namespace): the test skips.
absl::Status SwitchToAUidOfItsOwn(OwnUid test) {
  const uid_t uid = 0x40000000u + static_cast<uid_t>(getpid()) * 3 + static_cast<uid_t>(test);
  if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
      setresuid(uid, uid, uid) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("switching to uid ", uid));
  }
  return absl::OkStatus();
}

// What the memory-read test's child does, as a uid of its own without
// CAP_SYS_PTRACE, as a compromised worker would: opens the /proc/PID/mem
// of a worker and of the closer. Its exit code says how far it got (0: both
// refused with EACCES).
int ReadChildrensMemory() {
  WorkerHandler handler;
  handler.replies_to_refusals = true;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  if (!SwitchToAUidOfItsOwn(OwnUid::kMemoryRead).ok()) {
    return 77;  // no uid to switch to (a user namespace): skipped
  }
  // The uid change made this process non-dumpable (fs.suid_dumpable), and
  // its children would inherit that: be what a service's main process is
  // after execve, dumpable.
  if (prctl(PR_SET_DUMPABLE, 1) != 0) return 15;
  ForkingServer::Options options;
  options.max_workers_per_uid = 1;
  ForkingServer server(broker->client(), handler, options);
  absl::StatusOr<wire::Channel> served = Connect(*broker, server, PeerOfUid(1000));
  if (!served.ok()) return 11;
  absl::StatusOr<std::string> reply = Call(*served, 1);
  if (!reply.ok()) return 12;
  const pid_t worker = WorkerOf(*reply);
  // Refused: the closer starts, and has set itself up once it has closed
  // the connection (end of stream after the refusal).
  absl::StatusOr<wire::Channel> refused = Connect(*broker, server, PeerOfUid(1000));
  if (!refused.ok() || !Receive(*refused).ok() ||
      Receive(*refused).status().code() != absl::StatusCode::kUnavailable) {
    return 13;
  }
  std::set<pid_t> children = Children();
  if (children.size() != 2 || children.count(worker) == 0) return 14;
  children.erase(worker);
  const pid_t closer = *children.begin();
  int code = 20;
  for (pid_t pid : {worker, closer}) {
    const std::string mem = absl::StrCat("/proc/", pid, "/mem");
    UniqueFd fd(open(mem.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd) {
      std::fprintf(stderr, "opened %s of a %s\n", mem.c_str(), pid == worker ? "worker" : "closer");
      return code;
    }
    if (errno != EACCES) return code + 1;
    code += 2;
  }
  return 0;
}

TEST(ForkingServerIsolationTest, NoOtherProcessOfTheUidCanReadAWorkersOrTheClosersMemory) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run as a uid of its own";
  const int code = ExitCodeInChild(ReadChildrensMemory);
  if (code == 77) GTEST_SKIP() << "cannot switch uid here";
  // 20: a worker's memory could be read; 22: the closer's.
  EXPECT_EQ(code, 0);
}

// What the fd-limit test's child does; its exit code says how far it got
// (0: all as expected).
int ServeWithAFullFdTable() {
  // More connections than the main process's fd table holds pidfds for
  // once RLIMIT_NOFILE is lowered to kRoom above what is open.
  constexpr int kRoom = 24 + static_cast<int>(ForkingServer::kMaxParked);
  constexpr int kFlood = kRoom + 6;
  WorkerHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  ForkingServer server(broker->client(), handler, ForkingServer::Options());
  // All queued before the server starts, the clients' ends held open (a
  // worker whose client hung up could exit, and be reaped, in the turn).
  // Sent before RLIMIT_NOFILE is lowered: the kernel refuses a sendmsg
  // with fds (ETOOMANYREFS) when the fds in flight of the sender's user,
  // every process of its uid (other tests running at the same time),
  // exceed the sender's own RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE
  // in the initial user namespace, which a test in Bazel's sandbox lacks.
  // The lowered limit is in force where the server must meet it: Init and
  // the turn that receives them.
  absl::StatusOr<UniqueFd> existing_end = broker->Connect(PeerOfUid(1000));
  if (!existing_end.ok()) return 11;
  std::vector<UniqueFd> flood;
  for (uint32_t i = 0; i < kFlood; ++i) {
    absl::StatusOr<UniqueFd> end = broker->Connect(PeerOfUid(2000 + i));
    if (!end.ok()) return 12;
    flood.push_back(std::move(*end));
  }
  const int open = testing::CountOpenFds();
  rlimit limit{};
  if (open < 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0) return 13;
  limit.rlim_cur = static_cast<rlim_t>(open + kRoom);
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 14;
  absl::StatusOr<bool> serving = server.Turn(0);
  if (!serving.ok()) {
    std::fprintf(stderr, "the server ended: %s\n", serving.status().ToString().c_str());
    return 15;
  }
  if (!*serving) return 16;
  if (server.worker_count() == 0 || server.worker_count() >= static_cast<size_t>(kRoom)) {
    return 17;
  }
  wire::Channel existing(std::move(*existing_end));
  absl::StatusOr<std::string> reply = Call(existing, 1);
  if (!reply.ok() || WorkerOf(*reply) <= 0) return 18;
  return 0;
}

// The main process at its RLIMIT_NOFILE could not receive a new
// connection's fd: the broker's `incoming` would arrive cut short
// (MSG_CTRUNC), and the Client drop it, its client told nothing. The server
// bounds its workers (a pidfd each) by the fds it may still open, and
// refuses connections beyond.
TEST(ForkingServerLimitTest, KeepsServingWhenMoreConnectionsComeThanItsFdTableHolds) {
  // 15: the server ended; 17: it had no worker, or more than fit.
  EXPECT_EQ(ExitCodeInChild(ServeWithAFullFdTable), 0);
}

// What the queued-connections test's child does (0: all as expected).
//
// Connections the Client queued before the server ran hold an fd each,
// which their workers' pidfds take over: not fds used for good. With room
// for 2 more fds beyond the reserve (and the park's) and 5 connections
// queued, it serves all 5.
int ServeConnectionsQueuedInAFullFdTable() {
  constexpr size_t kQueued = 5;
  constexpr int kFreeBeyondReserve = 2;
  WorkerHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  std::vector<UniqueFd> ends;  // the clients' ends, kept open
  for (uint32_t i = 0; i < kQueued; ++i) {
    absl::StatusOr<UniqueFd> end = broker->Connect(PeerOfUid(2000 + i));
    if (!end.ok()) return 11;
    ends.push_back(std::move(*end));
  }
  if (!broker->AnswerReady().ok() || !broker->client().Ready().ok()) return 12;
  if (broker->client().queued_incoming() != kQueued) return 13;
  // The server's epoll fd, made at Init before it counts, takes one more.
  const int open = testing::CountOpenFds();
  rlimit limit{};
  if (open < 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0) return 14;
  limit.rlim_cur = static_cast<rlim_t>(open + 1 + static_cast<int>(kFdReserve) +
                                       static_cast<int>(ForkingServer::kMaxParked) +
                                       kFreeBeyondReserve);
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 15;
  ForkingServer::Options options;
  options.max_workers = kQueued + kFreeBeyondReserve;
  options.max_closers = 0;  // their fds are not what is tested
  ForkingServer server(broker->client(), handler, options);
  absl::StatusOr<bool> serving = server.Turn(0);
  if (!serving.ok() || !*serving) return 16;
  if (server.worker_count() != kQueued) {
    std::fprintf(stderr, "serves %zu of the %zu queued connections\n", server.worker_count(),
                 kQueued);
    return 17;
  }
  return 0;
}

TEST(ForkingServerLimitTest, ConnectionsQueuedBeforeItRanAreNotFdsUsedForGood) {
  // 17: it refused some of them, its room lowered by their fds.
  EXPECT_EQ(ExitCodeInChild(ServeConnectionsQueuedInAFullFdTable), 0);
}

// What the dropped-connections test's child does (0: all as expected): as
// ConnectionLoop's, the server says that the Client dropped connections
// during a call, and serves those that fit.
int ServeAfterACallDroppedConnections() {
  constexpr size_t kWaiting = 5;
  constexpr size_t kRoom = 2;
  WorkerHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  if (!broker->AnswerReady().ok() || !broker->client().Ready().ok()) return 11;
  absl::StatusOr<std::vector<UniqueFd>> ends = broker->ConnectDuringACall(kWaiting, kRoom);
  if (!ends.ok()) {
    std::fprintf(stderr, "the call failed: %s\n", ends.status().ToString().c_str());
    return 12;
  }
  ForkingServer::Options options;
  options.max_closers = 0;  // not what is tested
  ForkingServer server(broker->client(), handler, options);
  ::testing::internal::CaptureStderr();
  absl::StatusOr<bool> serving = server.Turn(0);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  if (!serving.ok() || !*serving) return 13;
  if (server.worker_count() != kRoom) return 14;
  if (logged.find("dropped 3 client connections") == std::string::npos) {
    std::fprintf(stderr, "logged: %s\n", logged.c_str());
    return 15;
  }
  return 0;
}

TEST(ForkingServerLimitTest, SaysThatTheClientDroppedConnectionsDuringACall) {
  // 12: the call failed (DATA_LOSS: the broker connection was closed); 15:
  // nothing said.
  EXPECT_EQ(ExitCodeInChild(ServeAfterACallDroppedConnections), 0);
}

// What the fork-failure test's child does; its exit code says how far it
// got (0: all as expected).
int RefuseWhenForkFails() {
  WorkerHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  // RLIMIT_NPROC counts the processes of the real uid, and root is exempt.
  // The hard limit leaves room to raise the soft one to three below.
  rlimit one{1, 3};
  if (setrlimit(RLIMIT_NPROC, &one) != 0) return 11;
  if (!SwitchToAUidOfItsOwn(OwnUid::kForkFails).ok()) {
    return 77;  // no uid to switch to (a user namespace): skipped
  }
  handler.replies_to_refusals = true;
  ForkingServer server(broker->client(), handler, ForkingServer::Options());
  absl::StatusOr<wire::Channel> refused = Connect(*broker, server, PeerOfUid(1000));
  if (!refused.ok()) return 12;
  absl::StatusOr<std::string> why = Receive(*refused);
  if (!why.ok() || why->find("no worker process could be started for the connection: fork: ") ==
                       std::string::npos) {
    return 13;
  }
  if (server.worker_count() != 0) return 14;
  // Room for three processes: this one, the closer that the next turn
  // starts first for the refused connection waiting for one (no closer
  // could be started either), and the worker.
  rlimit three{3, 3};
  if (setrlimit(RLIMIT_NPROC, &three) != 0) return 15;
  absl::StatusOr<wire::Channel> served = Connect(*broker, server, PeerOfUid(1000));
  if (!served.ok()) return 16;
  // A reply from a worker ("pid N"), not a refusal, which is a reply too.
  absl::StatusOr<std::string> reply = Call(*served, 1);
  if (!reply.ok() || WorkerOf(*reply) <= 0) {
    std::fprintf(stderr, "not served: %s\n", Text(reply).c_str());
    return 17;
  }
  // The refused connection went to that closer, which closed it.
  if (!Readable(refused->fd(), kSafetyMs) ||
      Receive(*refused).status().code() != absl::StatusCode::kUnavailable) {
    return 18;
  }
  return 0;
}

// What the no-closer test's child does (0: all as expected): no process
// can be started, so a refused connection finds no closer; it waits in the
// main process, open, until a closer can be started, which then closes it.
int ParkWhileNoCloserCanStart() {
  WorkerHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  rlimit one{1, 2};
  if (setrlimit(RLIMIT_NPROC, &one) != 0) return 11;
  if (!SwitchToAUidOfItsOwn(OwnUid::kNoCloser).ok()) {
    return 77;
  }
  handler.replies_to_refusals = true;
  ForkingServer server(broker->client(), handler, ForkingServer::Options());
  absl::StatusOr<wire::Channel> refused = Connect(*broker, server, PeerOfUid(1000));
  if (!refused.ok() || !Receive(*refused).ok()) return 12;
  if (Readable(refused->fd())) return 13;  // closed by the main process
  absl::StatusOr<wire::Channel> again = Connect(*broker, server, PeerOfUid(1000));
  if (!again.ok()) return 14;
  absl::StatusOr<std::string> why = Receive(*again);
  if (!why.ok() || why->find("1 refused connections of uid 1000 wait to be closed") ==
                       std::string::npos) {
    return 15;
  }
  // Nothing is to come (no connection, no child), yet the turn ends: while
  // connections are parked and a closer could be started, the main loop
  // wakes every 100 ms to offer them again (Run turns again). Were it to
  // wait for an event, SIGALRM would end this child.
  alarm(kSafetyMs / 1000);
  absl::StatusOr<bool> woken = server.Turn(-1);
  alarm(0);
  if (!woken.ok() || !*woken) return 20;
  if (Readable(refused->fd())) return 21;  // still parked, not closed here
  // A closer can be started now: the next turns hand both to it.
  rlimit two{2, 2};
  if (setrlimit(RLIMIT_NPROC, &two) != 0) return 16;
  absl::StatusOr<bool> serving = server.Turn(0);
  if (!serving.ok() || !*serving) return 17;
  if (!Readable(refused->fd(), kSafetyMs) || !Readable(again->fd(), kSafetyMs)) return 18;
  if (Receive(*refused).status().code() != absl::StatusCode::kUnavailable ||
      Receive(*again).status().code() != absl::StatusCode::kUnavailable) {
    return 19;
  }
  return 0;
}

TEST(ForkingServerForkTest, ARefusedConnectionNoCloserTakesWaitsForOne) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run as a uid of its own";
  const int code = ExitCodeInChild(ParkWhileNoCloserCanStart);
  if (code == 77) GTEST_SKIP() << "cannot switch uid here";
  // 13: the main process closed the refused connection itself; -2 (killed
  // by SIGALRM): a turn waited for an event while connections were parked.
  EXPECT_EQ(code, 0);
}

TEST(ForkingServerForkTest, AConnectionNoWorkerCanBeStartedForIsRefusedAndServingGoesOn) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run as a uid of its own";
  const int code = ExitCodeInChild(RefuseWhenForkFails);
  if (code == 77) GTEST_SKIP() << "cannot switch uid here";
  // 17: the second connection was refused too; 18: the first stays open.
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace capbroker

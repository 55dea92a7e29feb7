// ServiceHost's decisions (states, restarts, answers to waiting connects)
// against a fake loop and a scripted launcher, without a broker or a
// sandbox. The fake loop is still an event loop: the host's timers and the
// launched processes' pidfds are real fds, and a test waits for them, never
// on a sleep.
#include "broker/service/service_host.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "broker/audit/audit_log.h"
#include "broker/policy/policy_parser.h"
#include "broker/server/broker_loop.h"
#include "broker/server/request_handler.h"
#include "broker/server/stats.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/forked_launch.h"
#include "tests/fixtures/process_watch.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/request_bytes.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/host_files.h"

namespace capbroker::service {
namespace {

using schema::ServiceState;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// The client connection whose connects the tests make.
constexpr uint64_t kClient = 7;

// A safety net for a host that never wakes up, not a wait for an event.
constexpr int kTurnTimeoutMs = 10000;
// A safety net for a host that keeps waking up for nothing: an fd it
// watches stays readable and it never takes the news.
constexpr int kMaxTurns = 1000;

constexpr char kPolicy[] = R"(( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "me", match = ( uid = 1000 ) ) ],
  services = [
    ( name = "svc", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      restartDelayMs = 1, restartLimit = 2 ),
    ( name = "granted", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      restartDelayMs = 1, grants = [ "scratch" ] ),
    ( name = "notify", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = notify,
      startTimeoutMs = 200, restart = never ),
    ( name = "patient", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = notify,
      startTimeoutMs = 600000, restart = never ),
    ( name = "slow", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      startTimeoutMs = 200, restartLimit = 0 ),
    ( name = "once", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      restart = never, restartDelayMs = 1, restartLimit = 2 ),
    ( name = "flaky", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      restartDelayMs = 1, restartLimit = 4 ),
    ( name = "takes-fds", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      acceptsFds = true ) ] ))";

// An answer the host sent: "" for a grant, else the error's message.
std::string Decode(const server::Answer& answer) {
  capnp::FlatArrayMessageReader reader(answer.words);
  auto reply = reader.getRoot<schema::Reply>();
  return reply.isError() ? reply.getError().getMessage().cStr() : "";
}

uint64_t RequestId(const server::Answer& answer) {
  capnp::FlatArrayMessageReader reader(answer.words);
  return reader.getRoot<schema::Reply>().getId();
}

// Whether `fd` is a pidfd (/proc/self/fd names it "anon_inode:[pidfd]").
bool IsPidfd(int fd) {
  char target[64] = {};
  ssize_t n = readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), target, sizeof(target) - 1);
  return n > 0 && absl::string_view(target, static_cast<size_t>(n)) == "anon_inode:[pidfd]";
}

// Whether `fd` is a pipe.
bool IsPipe(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

class FakeLoop : public server::LoopPort {
 public:
  absl::Status Watch(int fd, std::function<void()> on_readable) override {
    if (refuse_watches || (refuse_pidfd_watches && IsPidfd(fd)) ||
        (refuse_pipe_watches && IsPipe(fd))) {
      return absl::ResourceExhaustedError("epoll_ctl: Cannot allocate memory (refused by the test)");
    }
    watched_[fd] = std::move(on_readable);
    return absl::OkStatus();
  }
  void Unwatch(int fd) override { watched_.erase(fd); }
  absl::StatusOr<uint64_t> AddServiceConnection(UniqueFd fd, Identity identity) override {
    if (refuse_service_connections) {
      return absl::ResourceExhaustedError(
          "epoll_ctl: No space left on device (refused by the test)");
    }
    connections_[++last_id_] = std::move(fd);
    identities[last_id_] = std::move(identity);
    return last_id_;
  }
  bool Send(uint64_t id, server::Answer answer) override {
    // Queued, a service's end would wait in the broker while the client
    // holds the other (see BrokerLoop): those go through Deliver.
    EXPECT_EQ(connections_.count(id), 0u) << "queued on service connection " << id;
    if (fail_sends_to.count(id) != 0) {
      closed_clients.insert(id);  // as the loop closes a client it cannot queue for
      dropped[id].push_back(answer.outcome.principal);  // the loop's to put on record
      return false;
    }
    return Record(id, std::move(answer));
  }
  bool Deliver(uint64_t id, server::Answer answer) override {
    if (refuse_delivery) return false;
    return Record(id, std::move(answer));
  }
  bool Record(uint64_t id, server::Answer answer) {
    answers[id].push_back(Decode(answer));
    answered[id].push_back(RequestId(answer));
    for (UniqueFd& fd : answer.outcome.fds) sent_fds[id].push_back(std::move(fd));
    return true;
  }
  void CloseConnection(uint64_t id) override { connections_.erase(id); }
  bool IsOpen(uint64_t id) const override { return closed_clients.count(id) == 0; }
  // All written, or (audit_written unset) all lost; ServiceHostWithLoopTest
  // has the real loop, for a write that takes part of the lines.
  std::vector<uint64_t> AuditLinesLost(const std::vector<uint64_t>& lines) override {
    return audit_written ? std::vector<uint64_t>() : lines;
  }

  // One turn: waits until a watched fd is readable, then runs the
  // callbacks of those that are. False when none became readable in time.
  bool Turn() {
    std::vector<pollfd> fds;
    for (const auto& [fd, callback] : watched_) fds.push_back({fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), kTurnTimeoutMs) <= 0) return false;
    for (const pollfd& p : fds) {
      // A callback run before may have unwatched it.
      auto it = watched_.find(p.fd);
      if (p.revents == 0 || it == watched_.end()) continue;
      std::function<void()> callback = it->second;
      callback();
    }
    return true;
  }

  // One turn, once every watched fd is readable: their callbacks run in
  // the order of their numbers, as in one turn of the real loop where all
  // are. False when they were not all readable in time.
  bool TurnOnceAllReadable() {
    std::vector<pollfd> fds;
    for (const auto& [fd, callback] : watched_) fds.push_back({fd, POLLIN, 0});
    for (size_t ready = 0; ready < fds.size();) {
      pollfd& p = fds[ready];
      if (poll(&p, 1, kTurnTimeoutMs) != 1) return false;
      ++ready;
    }
    return Turn();
  }

  // The id of the service connection added last.
  uint64_t last_connection() const { return last_id_; }
  // The broker's end of the service connection `id` (-1: none).
  int ServiceConnection(uint64_t id) const {
    auto it = connections_.find(id);
    return it == connections_.end() ? -1 : it->second.get();
  }

  // The identity each service connection was added with.
  std::map<uint64_t, Identity> identities;
  // What each connection was sent, in order, and the request each answered.
  std::map<uint64_t, std::vector<std::string>> answers;
  // The fds each connection was sent, in order.
  std::map<uint64_t, std::vector<UniqueFd>> sent_fds;
  std::map<uint64_t, std::vector<uint64_t>> answered;
  bool refuse_watches = false;
  bool refuse_pidfd_watches = false;        // only those of pidfds
  // Only those of pipes: a launch's report, and a launched process's
  // output (set once its launch's report is watched, only that).
  bool refuse_pipe_watches = false;
  bool refuse_service_connections = false;  // AddServiceConnection fails
  bool refuse_delivery = false;  // a service's socket is full
  // Client connections whose queue is full (a Send closes them), and those
  // closed.
  std::set<uint64_t> fail_sends_to;
  std::set<uint64_t> closed_clients;
  // The principals of the answers a failed Send dropped, which the real
  // loop puts on record as not delivered (Outcome::principal).
  std::map<uint64_t, std::vector<std::string>> dropped;
  bool audit_written = true;

 private:
  std::map<int, std::function<void()>> watched_;
  std::map<uint64_t, UniqueFd> connections_;
  uint64_t last_id_ = 100;
};

// Moves the calling process into the cgroup `path`, or exits.
void JoinCgroup(const std::string& path) {
  int fd = open((path + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1) _exit(2);
  close(fd);
}

// How a scripted launch goes.
struct Script {
  bool stuck = false;           // the child never finishes its setup
  std::string cgroup;           // the child joins this cgroup first
  bool descendant = false;      // and starts a process that runs until killed
  absl::Status report_failure;  // what the child reports, once set up
  int exit_code = -1;           // then exits with it at once; -1: runs until killed
  bool ignores_sigterm = false;
  // What the child writes on its output (one write), before it reports
  // itself set up.
  std::string output;
  // Unless empty, what the child writes on its output when it gets SIGTERM,
  // as a real service does, through a blocking write end (more than the
  // pipe holds waits for the host to read); then it exits with status 0.
  std::string output_at_sigterm;
  // Whether the host is given, as the child's output, a source that never
  // runs dry (/dev/zero): a pipe kept full by a service that floods it.
  // A real flood races the host's reads and only sometimes keeps ahead
  // (the host finds the pipe empty now and then); this always does.
  bool endless_output = false;
  // Whether the host is given, as the process's pidfd, one of the init of
  // the test's pid namespace, which SIGKILL from inside it does not end,
  // nor does it exit: a process stuck in the kernel. The host must send it
  // nothing but SIGKILL (an init may act on SIGTERM: tini passes it on).
  // The scripted child itself is then the test's to kill.
  bool unkillable = false;
  // Whether the child reaches execve after the host last read its report
  // and before the SIGKILL that gives its launch up (Abandon says it may
  // have run its program). With `stuck`, the host never reads that it did;
  // with `unkillable`, the pidfd handed over is init's, as above.
  bool execs_at_kill = false;
};

// Writes all of `bytes` to `fd`, or exits: for a forked child.
void WriteAllOrExit(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// A launch as sandbox::StartLaunch makes it, scripted: a forked child holds
// the write end of a report pipe and closes it once it is "set up" (as
// execve would), unless it is stuck; Continue then hands the process over,
// or fails as scripted. The child sets itself up only once the host has
// first looked (the first Continue), so that a launch always finishes in a
// later turn of the loop, as a real one does.
class FakeLaunch : public testing::ForkedLaunch {
 public:
  static absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> Start(const Script& script) {
    int report[2], output[2], go[2];
    if (pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) return absl::InternalError("pipe2");
    UniqueFd report_read(report[0]), report_write(report[1]);
    if (pipe2(go, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
    UniqueFd go_read(go[0]), go_write(go[1]);
    if (pipe2(output, O_CLOEXEC | O_NONBLOCK) != 0) return absl::InternalError("pipe2");
    UniqueFd output_read(output[0]), output_write(output[1]);
    pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork");
    if (pid == 0) {
      if (script.ignores_sigterm) signal(SIGTERM, SIG_IGN);
      sigset_t term;
      sigemptyset(&term);
      sigaddset(&term, SIGTERM);
      // Blocked from the start, so that sigwait takes a SIGTERM sent at any time.
      if (!script.output_at_sigterm.empty() && sigprocmask(SIG_BLOCK, &term, nullptr) != 0) {
        _exit(4);
      }
      char byte;
      if (!script.stuck && read(go[0], &byte, 1) == 1) {
        if (!script.output.empty() &&
            write(output[1], script.output.data(), script.output.size()) !=
                static_cast<ssize_t>(script.output.size())) {
          _exit(3);
        }
        if (!script.cgroup.empty()) JoinCgroup(script.cgroup);
        if (script.descendant && fork() == 0) {
          close(report[1]);
          for (;;) pause();
        }
        close(report[1]);
      }
      if (!script.stuck && script.report_failure.ok() && script.exit_code >= 0) {
        _exit(script.exit_code);
      }
      if (!script.output_at_sigterm.empty()) {
        int signal_number = 0;
        if (sigwait(&term, &signal_number) != 0 || fcntl(output[1], F_SETFL, 0) != 0) _exit(4);
        WriteAllOrExit(output[1], script.output_at_sigterm);
        _exit(0);
      }
      for (;;) pause();
    }
    if (script.endless_output) {
      output_read.reset(open("/dev/zero", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
      if (!output_read) return absl::InternalError("open(/dev/zero)");
    }
    auto launch = std::make_unique<FakeLaunch>();
    absl::Status adopted = launch->Adopt(pid, std::move(output_read), script.cgroup);
    if (!adopted.ok()) return adopted;
    launch->report_ = std::move(report_read);
    launch->go_ = std::move(go_write);
    launch->failure_ = script.report_failure;
    launch->unkillable_ = script.unkillable;
    launch->execs_at_kill_ = script.execs_at_kill;
    return std::unique_ptr<sandbox::PendingLaunch>(std::move(launch));
  }

  int report_fd() const override { return report_.get(); }
  absl::StatusOr<std::optional<sandbox::LaunchedProcess>> Continue() override {
    if (go_) {
      if (write(go_.get(), "g", 1) != 1) return absl::InternalError("write(go)");
      go_.reset();
      return std::nullopt;
    }
    char byte;
    ssize_t n = read(report_.get(), &byte, 1);
    if (n < 0 && errno == EAGAIN) return std::nullopt;
    if (n != 0) return absl::InternalError("unexpected report");
    if (!failure_.ok()) return failure_;
    sandbox::LaunchedProcess process = HandOver();
    if (unkillable_) {
      process.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, 1, 0)));  // close-on-exec
      if (!process.pidfd) return absl::InternalError("pidfd_open(1)");
    }
    return std::optional<sandbox::LaunchedProcess>(std::move(process));
  }
  sandbox::AbandonedChild Abandon() override {
    sandbox::AbandonedChild child = ForkedLaunch::Abandon();
    if (!execs_at_kill_) return child;
    child.may_have_run = true;
    if (unkillable_) {
      // The child itself, killed, is the test's to reap.
      child.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, 1, 0)));  // close-on-exec
      EXPECT_TRUE(child.pidfd.valid()) << "pidfd_open(1): " << strerror(errno);
    }
    return child;
  }

 private:
  UniqueFd report_;
  UniqueFd go_;
  absl::Status failure_;
  bool unkillable_ = false;
  bool execs_at_kill_ = false;
};

// Whether `pid` is gone: reaped, not merely dead.
bool Reaped(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD;
}

class ServiceHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(kPolicy, "t.capnp"));
    ASSERT_OK(handler_.SetPolicy(std::move(policy)));
    MakeHost();
  }

  // A new host, as at the broker's start, with the policy loaded.
  void MakeHost() {
    host_.reset();
    HostOptions options;
    options.launcher = [this](const sandbox::SandboxSpec& spec)
        -> absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> {
      size_t launch = launches_++;
      if (launch < failures_.size() && !failures_[launch].ok()) return failures_[launch];
      start_grants_.push_back(spec.fds.size());
      Script script = scripts_[spec.name];
      script.exit_code = exit_code_;
      absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> started = FakeLaunch::Start(script);
      if (started.ok()) {
        pids_.push_back((*started)->pid());
        report_fds_.push_back((*started)->report_fd());
      }
      return started;
    };
    options.start_limit = start_limit_;
    options.check_grant = check_grant_;
    if (stop_timeout_.has_value()) options.stop_timeout = *stop_timeout_;
    if (stable_run_.has_value()) options.stable_run = *stable_run_;
    if (kill_wait_.has_value()) options.kill_wait = *kill_wait_;
    if (clock_.has_value()) {
      options.now = [this] { return *clock_ += clock_step_; };
    }
    host_ = std::make_unique<ServiceHost>(handler_, loop_, std::move(options));
    handler_.SetServiceDirectory(host_.get());
    host_->PolicyChanged();
  }

  // A connect from a client of `uid` on `connection`; a hosted service's
  // when `as_service` names one.
  absl::StatusOr<std::optional<UniqueFd>> Connect(absl::string_view service,
                                                  uint64_t request_id, uint32_t uid = 1000,
                                                  uint64_t connection = kClient,
                                                  absl::string_view as_service = "") {
    server::ConnectRequest request;
    request.connection_id = connection;
    request.request_id = request_id;
    request.client.uid = uid;
    request.client.service = std::string(as_service);
    request.principal = "me";
    // Told why a start failed, as root's own client is: the tests read the
    // reasons (ConnectAs asks as the handler decides who may).
    request.administrator = true;
    return host_->Connect(*handler_.policy().FindService(service), request);
  }

  // A connect as a client of `uid` on connection `connection` sends it,
  // through the request handler (which decides who is an administrator):
  // "deferred" (it waits for the service), "granted", or the error's
  // message.
  std::string ConnectAs(uint32_t uid, uint64_t connection, absl::string_view service,
                        uint64_t request_id) {
    server::Session session;
    session.identity.uid = uid;
    session.hello_done = true;
    session.connection_id = connection;
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(request_id);
    request.initConnect().setService(std::string(service));
    auto reply = reply_message.initRoot<schema::Reply>();
    server::Outcome outcome = handler_.Handle(session, request.asReader(), reply);
    // Nothing is set in a deferred reply, which reads as an empty error.
    if (outcome.deferred) return "deferred";
    if (reply.isError()) {
      EXPECT_EQ(reply.getError().getCode(), schema::ErrorCode::UNAVAILABLE);
      return reply.getError().getMessage().cStr();
    }
    return "granted";
  }

  // Loads `text` as the new policy, as a reload does.
  void Reload(absl::string_view text) {
    ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(text, "t.capnp"));
    ASSERT_OK(handler_.SetPolicy(std::move(policy)));
    host_->PolicyChanged();
  }

  // Reloads kPolicy with every `from` (each must be in it) replaced by `to`.
  void ReloadEdited(
      std::initializer_list<std::pair<absl::string_view, absl::string_view>> edits) {
    for (const auto& [from, to] : edits) ASSERT_TRUE(absl::StrContains(kPolicy, from)) << from;
    Reload(absl::StrReplaceAll(kPolicy, edits));
  }

  // Reloads kPolicy without "svc".
  void ReloadWithoutSvc() {
    ReloadEdited({{R"(( name = "svc", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      restartDelayMs = 1, restartLimit = 2 ),)",
                   ""}});
  }

  // Whether the host still has an instance of `service` (one removed from
  // the policy included).
  bool Hosts(absl::string_view service) const {
    for (const server::ServiceReport& report : host_->Report()) {
      if (report.name == service) return true;
    }
    return false;
  }

  // host_->StopAll(), on another thread, so that a StopAll that does not
  // return fails the test instead of hanging it: after kTurnTimeoutMs (a
  // safety net, not a wait for an event) the processes of the services
  // then running are killed, which lets it return.
  void StopAll() {
    std::vector<std::unique_ptr<testing::ProcessWatch>> running;
    for (const server::ServiceReport& report : host_->Report()) {
      if (report.pid != 0) running.push_back(std::make_unique<testing::ProcessWatch>(report.pid));
    }
    std::future<void> stopped = std::async(std::launch::async, [&] { host_->StopAll(); });
    if (stopped.wait_for(std::chrono::milliseconds(kTurnTimeoutMs)) ==
        std::future_status::ready) {
      return;
    }
    ADD_FAILURE() << "StopAll did not return within " << kTurnTimeoutMs << " ms";
    for (const std::unique_ptr<testing::ProcessWatch>& process : running) {
      process->Signal(SIGKILL);
    }
    stopped.wait();
  }

  server::ServiceReport Report(absl::string_view service) const {
    for (server::ServiceReport& report : host_->Report()) {
      if (report.name == service) return report;
    }
    ADD_FAILURE() << "no service " << service;
    return {};
  }

  // Kills and reaps the first launch's scripted child: the test's to end
  // when its script is `unkillable` (the host's SIGKILL went to another).
  void EndTheFirstChild() {
    EXPECT_EQ(kill(pids_[0], SIGKILL), 0);
    EXPECT_EQ(waitpid(pids_[0], nullptr, 0), pids_[0]);
  }

  // Runs "flaky", every run of which fails, until its fifth restart (one
  // more than restartLimit, 4, in a row would allow) or until it is given
  // up on, which must not happen; returns what the host logged meanwhile.
  std::string CrashLoopUntilFiveRestarts() {
    exit_code_ = 1;
    ::testing::internal::CaptureStderr();
    EXPECT_OK(Connect("flaky", 1).status());
    EXPECT_TRUE(RunUntil([&] {
      return Report("flaky").restarts == 5 || Report("flaky").state == ServiceState::FAILED;
    }));
    std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(Report("flaky").state, ServiceState::FAILED);
    return log;
  }

  // Connects to `service` (connect `id`) with its launch scripted to stick
  // in its setup: nothing answers yet, and the service is STARTING with the
  // stuck child as its pid.
  void ConnectToAStuckLaunch(const std::string& service, uint64_t id) {
    scripts_[service].stuck = true;
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> stuck, Connect(service, id));
    EXPECT_FALSE(stuck.has_value());
    EXPECT_EQ(Report(service).state, ServiceState::STARTING);
    ASSERT_EQ(pids_.size(), 1u);
    EXPECT_EQ(Report(service).pid, pids_[0]);
  }

  // Runs the loop until `done`; false (and a test failure) if it stalls or
  // spins.
  bool RunUntil(const std::function<bool()>& done) {
    for (int turns = 0; !done(); ++turns) {
      if (turns == kMaxTurns) {
        ADD_FAILURE() << kMaxTurns << " turns of the loop, and still not done";
        return false;
      }
      if (!loop_.Turn()) {
        ADD_FAILURE() << "nothing happened in " << kTurnTimeoutMs << " ms";
        return false;
      }
    }
    return true;
  }

  // Starts `service`, a process that runs until killed, and makes its exit
  // impossible for the host to reap: the test kills and reaps it first.
  pid_t StartThenReapBehindTheHostsBack(absl::string_view service) {
    EXPECT_OK(Connect(service, 1).status());
    EXPECT_TRUE(RunUntil([&] { return Report(service).state == ServiceState::RUNNING; }));
    pid_t pid = Report(service).pid;
    EXPECT_EQ(kill(pid, SIGKILL), 0);
    EXPECT_EQ(waitpid(pid, nullptr, 0), pid);
    return pid;
  }

  // Waits until the child of launch `launch` has closed its report pipe (as
  // execve does), without the loop reading it: true when it has, false
  // (and a test failure) if it did not in kTurnTimeoutMs.
  bool WaitForReport(size_t launch) {
    pollfd p{report_fds_.at(launch), POLLIN, 0};
    if (poll(&p, 1, kTurnTimeoutMs) == 1) return true;
    ADD_FAILURE() << "launch " << launch << " did not report in " << kTurnTimeoutMs << " ms";
    return false;
  }

  // WaitForReport of the only launch so far, for a test of a readiness
  // timeout (200 ms for "notify"): its child has then finished its setup
  // before the loop's first turn, however slowly it was scheduled, and the
  // timer can only find its program running (OnTimer reads the report
  // first). Were the loop to turn first, a child not scheduled within the
  // timeout would have its launch given up instead.
  bool WaitForReportBeforeTheLoopTurns() {
    EXPECT_EQ(report_fds_.size(), 1u);
    return report_fds_.size() == 1 && WaitForReport(0);
  }

  // The connects answered after they waited.
  const std::vector<std::string>& ClientAnswers() { return loop_.answers[kClient]; }

  // The audit log's lines so far.
  std::string AuditText() {
    audit_.Flush();
    std::string text;
    char buffer[4096];
    ssize_t n;
    for (off_t at = 0; (n = pread(audit_file_.get(), buffer, sizeof buffer, at)) > 0; at += n) {
      text.append(buffer, static_cast<size_t>(n));
    }
    return text;
  }

  UniqueFd audit_file_{memfd_create("audit", MFD_CLOEXEC)};
  audit::AuditLog audit_{audit_file_.get()};
  server::Stats stats_;
  server::RequestHandler handler_{audit_, stats_};
  FakeLoop loop_;
  // What the launcher returns, launch after launch: a failure, or (OK, or
  // past the end) a launch as scripts_ says for the service, of a process
  // exiting with exit_code_.
  std::vector<absl::Status> failures_;
  std::map<std::string, Script> scripts_;
  int exit_code_ = -1;
  size_t launches_ = 0;
  std::vector<pid_t> pids_;  // of the launches' children, in order
  std::vector<int> report_fds_;  // their report pipes (the host's to close)
  std::vector<size_t> start_grants_;  // how many grants each launch was given
  StartLimit start_limit_;
  std::optional<absl::Duration> stop_timeout_;  // unset: HostOptions' own
  std::optional<absl::Duration> stable_run_;    // likewise
  std::optional<absl::Duration> kill_wait_;     // likewise
  // Unset: the host's clock is its own (MonotonicNow). Set: the host reads
  // this, which moves only as the test steps it, by clock_step_ at each
  // reading and by hand.
  std::optional<absl::Duration> clock_;
  absl::Duration clock_step_ = absl::ZeroDuration();
  server::RequestHandler::StartCheck check_grant_;
  std::unique_ptr<ServiceHost> host_;
};

// The broker takes no fds on a service's broker connection, and a service
// that takes none from its clients (acceptsFds unset) gets its end of each
// client connection refusing them before the client gets its own end: a
// client's fds are refused by the kernel (EPERM) even before the service
// has taken its end, and the service can never be the one to drop them.
TEST_F(ServiceHostTest, SocketsThatTakeNoFdsRefuseThemBeforeAnyoneCanSend) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "this kernel has no SO_PASSRIGHTS";
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  uint64_t service = loop_.last_connection();
  EXPECT_FALSE(wire::TakesFds(loop_.ServiceConnection(service)).value_or(true))
      << "the broker's end of the service's connection takes fds";
  // The connect that started it was answered, with the service's end sent
  // first; a connect now is answered at once, likewise.
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> client_end, Connect("svc", 2));
  ASSERT_TRUE(client_end.has_value());
  ASSERT_EQ(loop_.sent_fds[service].size(), 2u);
  EXPECT_FALSE(wire::TakesFds(loop_.sent_fds[service][1].get()).value_or(true))
      << "the service's end of a client connection takes fds";
  const uint8_t byte = 0;
  const int any = audit_file_.get();  // any fd will do
  EXPECT_EQ(testing::RawSend(client_end->get(), {&byte, 1}, {&any, 1}), EPERM);
}

// A service whose policy says acceptsFds gets ends that take them; the
// broker's own end of its connection still refuses them.
TEST_F(ServiceHostTest, AServiceThatAcceptsFdsGetsEndsThatTakeThem) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "this kernel has no SO_PASSRIGHTS";
  ASSERT_OK(Connect("takes-fds", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("takes-fds").state == ServiceState::RUNNING; }));
  uint64_t service = loop_.last_connection();
  EXPECT_FALSE(wire::TakesFds(loop_.ServiceConnection(service)).value_or(true));
  ASSERT_EQ(loop_.sent_fds[service].size(), 1u);
  EXPECT_TRUE(wire::TakesFds(loop_.sent_fds[service][0].get()).value_or(false));
}

TEST_F(ServiceHostTest, ALaunchThatFailedForAShortageIsTriedAgainAfterTheDelay) {
  failures_ = {absl::ResourceExhaustedError("pipe2(report): Too many open files")};
  EXPECT_THAT(Connect("svc", 1).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       "service 'svc' could not start: pipe2(report): Too many open files"));
  EXPECT_EQ(Report("svc").state, ServiceState::BACKOFF);
  // The next connect waits for the next try, and is served by it.
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("svc", 2));
  EXPECT_FALSE(waiting.has_value());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0], "");
  EXPECT_EQ(Report("svc").state, ServiceState::RUNNING);
  EXPECT_EQ(Report("svc").restarts, 1u);
  EXPECT_EQ(launches_, 2u);
}

TEST_F(ServiceHostTest, AStartWaitsForTheAuditLogOfItsGrants) {
  loop_.audit_written = false;
  EXPECT_THAT(Connect("granted", 1).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("audit lines")));
  EXPECT_EQ(Report("granted").state, ServiceState::BACKOFF);
  ASSERT_OK(Connect("granted", 2).status());
  // README: grants resume as soon as the log can be written again.
  loop_.audit_written = true;
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0], "");
  EXPECT_EQ(Report("granted").state, ServiceState::RUNNING);
}

TEST_F(ServiceHostTest, ShortagesCountAgainstTheRestartLimit) {
  const absl::Status shortage = absl::UnavailableError("clone3: Resource temporarily unavailable");
  failures_ = {shortage, shortage, shortage, shortage};
  EXPECT_THAT(Connect("svc", 1).status(), StatusIs(absl::StatusCode::kUnavailable));
  // The first launch, then restartLimit (2) tries.
  ASSERT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::FAILED; }));
  EXPECT_EQ(launches_, 3u);
  EXPECT_EQ(Report("svc").restarts, 2u);
  EXPECT_THAT(Connect("svc", 2).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("has failed")));
}

// A timer cannot be made while fds are short. Nor may a service then run
// without one: a start that never becomes ready would never time out, and
// its waiting connects would hang.
TEST_F(ServiceHostTest, AServiceGetsItsTimerWhenItStartsAfterAShortage) {
  loop_.refuse_watches = true;
  MakeHost();
  EXPECT_THAT(Connect("notify", 1).status(), StatusIs(absl::StatusCode::kUnavailable));
  loop_.refuse_watches = false;
  host_->PolicyChanged();  // a reload, once fds are back
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 2));
  EXPECT_FALSE(waiting.has_value());
  ASSERT_TRUE(WaitForReportBeforeTheLoopTurns());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0], "service 'notify' did not become ready within 200 ms");
}

// A service killed for its readiness timeout says so in capctl services,
// not only "killed by SIGKILL".
TEST_F(ServiceHostTest, AServiceKilledForItsReadinessTimeoutSaysWhy) {
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 1));
  EXPECT_FALSE(waiting.has_value());
  ASSERT_TRUE(WaitForReportBeforeTheLoopTurns());
  ASSERT_TRUE(RunUntil([&] { return !Report("notify").last_exit.empty(); }));
  EXPECT_EQ(Report("notify").last_exit,
            "did not become ready within 200 ms (killed by SIGKILL); its output is in the "
            "broker's log");
}

// A service that exits before it is ready most often said why on its
// stderr, which only the broker's log has: the connect's error and the
// report's last exit say where to look. A clean exit says no more.
// "patient" (600 s to become ready): on a loaded machine its start timer
// cannot fire before its exit is read, however slowly the child runs.
TEST_F(ServiceHostTest, AFailedRunSaysItsOutputIsInTheBrokersLog) {
  exit_code_ = 1;
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("patient", 1));
  EXPECT_FALSE(waiting.has_value());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'patient' exited before it was ready (exit status 1; its output is in "
            "the broker's log)");
  EXPECT_EQ(Report("patient").last_exit, "exit status 1; its output is in the broker's log");

  exit_code_ = 0;
  ASSERT_OK(Connect("once", 2).status());
  ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  EXPECT_EQ(Report("once").last_exit, "exit status 0");
}

// A client that can crash a service must not keep the broker launching
// sandboxes: a start that follows a failed run is a restart in a row, even
// when a connect asks for it and the service is not to be restarted.
TEST_F(ServiceHostTest, AConnectAfterAFailedRunIsARestartInARow) {
  exit_code_ = 1;  // every run fails at once
  ASSERT_OK(Connect("once", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  for (uint64_t restart = 1; restart <= 2; ++restart) {
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("once", 1 + restart));
    EXPECT_FALSE(waiting.has_value());  // not started at once: after the delay
    EXPECT_EQ(Report("once").state, ServiceState::BACKOFF);
    ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1 + restart; }));
    EXPECT_EQ(ClientAnswers().back(), "");
    ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  }
  EXPECT_THAT(Connect("once", 4).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       "service 'once' has failed (exit status 1; its output is in the "
                       "broker's log); it starts again after a policy reload"));
  EXPECT_EQ(launches_, 3u);
  EXPECT_EQ(Report("once").restarts, 2u);
}

// A clean exit is no failure, however short the run: a service that serves
// one connection per process starts again, with no delay, at each connect
// (more often than its restartLimit).
TEST_F(ServiceHostTest, ACleanExitIsNoFailureHoweverShortTheRun) {
  exit_code_ = 0;
  for (uint64_t i = 1; i <= 4; ++i) {
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("once", i));
    EXPECT_FALSE(waiting.has_value());  // answered once its launch is done
    EXPECT_EQ(Report("once").state, ServiceState::STARTING) << "connect " << i;
    ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == i; }));
    EXPECT_EQ(ClientAnswers().back(), "");
    ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  }
  EXPECT_EQ(launches_, 4u);
  EXPECT_EQ(Report("once").restarts, 0u);
}

// ... but only so often: a client looping connect and close must not keep
// the broker launching. Past the burst, a connect waits for the start's
// turn (no restart counted) and is answered when the service is ready.
// The host's clock moves only as the test moves it: however slowly the
// first two runs go on a loaded machine, the third start comes within the
// same second (on the wall clock, a second could have passed, and it ran).
TEST_F(ServiceHostTest, StartsAreRationed) {
  start_limit_ = {2, absl::Seconds(1)};
  clock_ = absl::Seconds(1000);
  MakeHost();
  exit_code_ = 0;
  for (uint64_t i = 1; i <= 2; ++i) {
    ASSERT_OK(Connect("once", i).status());
    ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == i; }));
    ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  }
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("once", 3));
  EXPECT_FALSE(waiting.has_value());
  EXPECT_EQ(Report("once").state, ServiceState::BACKOFF);
  ASSERT_OK(Connect("once", 4).status());  // waits with it
  EXPECT_EQ(launches_, 2u);
  // Its turn, when its timer (a second) fires.
  *clock_ += absl::Seconds(1);
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 4; }));
  EXPECT_EQ(ClientAnswers()[2], "");
  EXPECT_EQ(ClientAnswers()[3], "");
  EXPECT_EQ(launches_, 3u);
  EXPECT_EQ(Report("once").restarts, 0u);
}

// A process that SIGKILL does not end (stuck in the kernel: a request to a
// hung NFS or FUSE server) leaves no connect waiting for it: kill_wait
// after its SIGKILL those that wait are refused, saying why, and so is
// every connect until it has died, to it or to a new instance, which must
// not start meanwhile: it would share the grants the old one still holds.
TEST_F(ServiceHostTest, AProcessThatDoesNotDieAfterSigkillLeavesNoConnectWaiting) {
  scripts_["notify"].unkillable = true;
  kill_wait_ = absl::Milliseconds(50);
  MakeHost();
  ASSERT_OK(Connect("notify", 1).status());
  ASSERT_TRUE(WaitForReportBeforeTheLoopTurns());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_THAT(ClientAnswers()[0], HasSubstr("did not become ready within 200 ms"));
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 2));
  EXPECT_FALSE(waiting.has_value());  // it may still die within kill_wait
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 2; }));
  const std::string stuck = absl::StrCat(
      "service 'notify' did not die after SIGKILL (its process ", pids_[0],
      " is stuck in the kernel, as on a hung NFS or FUSE server); it can start again once "
      "that process has died");
  EXPECT_EQ(ClientAnswers()[1], stuck);
  EXPECT_THAT(Connect("notify", 3).status(), StatusIs(absl::StatusCode::kUnavailable, stuck));
  // A reload that restarts it: the new instance waits for the old process,
  // and its connects are refused as long as that one is stuck.
  ReloadEdited({{R"(( name = "notify", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "notify", command = [ "/usr/bin/other" ],)"}});
  EXPECT_THAT(Connect("notify", 4).status(), StatusIs(absl::StatusCode::kUnavailable, stuck));
  EXPECT_EQ(launches_, 1u);
  EndTheFirstChild();
}

// A readiness read after the start timeout's kill (sent before it) does
// not make the killed process a running one: the kill's wait stands, and
// connects are refused once it is known to be stuck, never handed to it.
TEST_F(ServiceHostTest, AReadinessAfterTheKillIsRefusedAndTheKillsWaitStands) {
  scripts_["notify"].unkillable = true;
  kill_wait_ = absl::Milliseconds(50);
  MakeHost();
  ASSERT_OK(Connect("notify", 1).status());
  ASSERT_TRUE(WaitForReportBeforeTheLoopTurns());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_THAT(ClientAnswers()[0], HasSubstr("did not become ready within 200 ms"));
  EXPECT_THAT(host_->Ready("notify"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("said it was ready after it was killed")));
  EXPECT_EQ(Report("notify").state, ServiceState::STARTING);
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 2));
  EXPECT_FALSE(waiting.has_value());  // not handed to the killed process
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 2; }));
  EXPECT_THAT(ClientAnswers()[1], HasSubstr("did not die after SIGKILL"));
  EndTheFirstChild();
}

// A launched process the loop cannot take on (here its broker connection,
// as epoll_ctl refuses one at max_user_watches) runs with its start grants:
// it is killed and stays the service's own until it has died, so that no
// restart runs a second instance with the same grants meanwhile. This one
// does not die (stuck in the kernel): no restart, and connects are refused.
TEST_F(ServiceHostTest, AProcessTheLoopCannotServeIsKilledAndNoRestartRunsUntilItHasDied) {
  scripts_["svc"].unkillable = true;
  kill_wait_ = absl::Milliseconds(50);
  MakeHost();
  loop_.refuse_service_connections = true;
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'svc' could not start: the broker could not serve it (epoll_ctl: No space "
            "left on device (refused by the test))");
  loop_.refuse_service_connections = false;
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("svc", 2));
  EXPECT_FALSE(waiting.has_value());  // it may still die within kill_wait
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 2; }));
  EXPECT_THAT(ClientAnswers()[1], HasSubstr("did not die after SIGKILL"));
  EXPECT_EQ(launches_, 1u) << "a restart ran while the old process held its grants";
  EndTheFirstChild();
}

// So too when its output cannot be watched, its broker connection taken
// on already: that connection is closed at once. What the program queued
// on it before the SIGKILL (opens that create or empty files) is not
// served to a process the broker kills as unservable.
TEST_F(ServiceHostTest, AProcessWhoseOutputCannotBeWatchedHasItsConnectionClosedAtOnce) {
  const uint64_t before = loop_.last_connection();
  ASSERT_OK(Connect("svc", 1).status());
  loop_.refuse_pipe_watches = true;  // its report is watched already: its output only
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  loop_.refuse_pipe_watches = false;
  EXPECT_EQ(ClientAnswers()[0],
            "service 'svc' could not start: the broker could not serve it (epoll_ctl: Cannot "
            "allocate memory (refused by the test))");
  ASSERT_EQ(loop_.last_connection(), before + 1) << "its connection was not taken on";
  EXPECT_EQ(loop_.ServiceConnection(loop_.last_connection()), -1)
      << "the connection of a process killed as unservable is still served";
  // Its exit goes as a failed run's.
  ASSERT_TRUE(RunUntil([&] { return launches_ == 2; }));
  EXPECT_TRUE(Reaped(pids_[0])) << "a restart ran before the old process was reaped";
}

// A launch given up at its start timeout whose child reached execve after
// the host last read its report, before the kill: its program ran with the
// start grants, so it stays the service's own, killed, and no restart runs
// beside it. This one does not die (stuck in the kernel): no restart, and
// connects are refused.
TEST_F(ServiceHostTest, ALaunchThatRanAsItTimedOutIsKilledAndNoRestartRunsUntilItHasDied) {
  scripts_["slow"].stuck = true;
  scripts_["slow"].execs_at_kill = true;
  scripts_["slow"].unkillable = true;
  kill_wait_ = absl::Milliseconds(50);
  MakeHost();
  ReloadEdited({{"startTimeoutMs = 200, restartLimit = 0 )",
                 "startTimeoutMs = 200, restartLimit = 2, restartDelayMs = 1 )"}});
  ASSERT_OK(Connect("slow", 1).status());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'slow' could not start: its sandbox was not set up within 200 ms "
            "(startTimeoutMs): the launch is given up; its program had started");
  EXPECT_EQ(Report("slow").pid, pids_[0]);
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("slow", 2));
  EXPECT_FALSE(waiting.has_value());  // it may still die within kill_wait
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 2; }));
  EXPECT_THAT(ClientAnswers()[1], HasSubstr("did not die after SIGKILL"));
  EXPECT_EQ(launches_, 1u) << "a restart ran while the old process held its grants";
  EXPECT_EQ(waitpid(pids_[0], nullptr, 0), pids_[0]);  // killed by Abandon
}

// So too for a launch a reload gives up: the new instance waits for the old
// process to die, as for one that ran (HasPredecessor), and the grants it
// had are not on record as not delivered.
TEST_F(ServiceHostTest, ALaunchThatRanAsAReloadGaveItUpIsWaitedForByTheNewInstance) {
  scripts_["granted"].stuck = true;
  scripts_["granted"].execs_at_kill = true;
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_EQ(Report("granted").state, ServiceState::STARTING);
  scripts_["granted"] = Script();  // the new instance's launch
  ReloadEdited({{R"(( name = "granted", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "granted", command = [ "/usr/bin/other" ],)"}});
  EXPECT_EQ(launches_, 1u) << "the new instance runs beside the old process";
  ASSERT_TRUE(RunUntil([&] { return launches_ == 2; }));
  EXPECT_TRUE(Reaped(pids_[0])) << "the new instance ran before the old process was reaped";
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0], "");
  EXPECT_THAT(AuditText(), Not(HasSubstr("not delivered")));
}

// So too when its pidfd cannot be watched: the loop will not say when it
// dies, so the host's timer looks (kill_wait after the SIGKILL, and every
// kill_wait after while it lives). It is reaped before a restart runs.
TEST_F(ServiceHostTest, AProcessWhosePidfdCannotBeWatchedIsKilledAndReapedBeforeARestart) {
  kill_wait_ = absl::Milliseconds(50);
  MakeHost();
  loop_.refuse_pidfd_watches = true;
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'svc' could not start: the broker could not serve it (epoll_ctl: Cannot "
            "allocate memory (refused by the test))");
  loop_.refuse_pidfd_watches = false;
  ASSERT_TRUE(RunUntil([&] { return launches_ == 2; }));
  EXPECT_TRUE(Reaped(pids_[0])) << "a restart ran before the old process was reaped";
  EXPECT_THAT(Report("svc").last_exit,
              StartsWith("the broker could not serve it (epoll_ctl: Cannot allocate memory "
                         "(refused by the test)) (killed by SIGKILL)"));
  EXPECT_EQ(Report("svc").restarts, 1u);
}

// A waitid that fails would fail again at every wakeup of the pidfd, which
// stays readable: the run is over, how it ended not known (a failure), and
// the pidfd is no longer watched.
TEST_F(ServiceHostTest, AnExitThatCannotBeReapedEndsTheRunOnce) {
  StartThenReapBehindTheHostsBack("once");
  ASSERT_TRUE(RunUntil([&] { return Report("once").state != ServiceState::RUNNING; }));
  EXPECT_EQ(Report("once").state, ServiceState::STOPPED);
  EXPECT_EQ(Report("once").pid, 0);
  EXPECT_THAT(Report("once").last_exit,
              AllOf(HasSubstr("not known: waitid(pidfd of pid "), HasSubstr("No child processes")));
  // A failure: the next start is a restart in a row.
  ASSERT_OK(Connect("once", 2).status());
  EXPECT_EQ(Report("once").state, ServiceState::BACKOFF);
}

// A flood of output: 150 lines in one write, more than a second's budget
// (100), and an unterminated tail. As the host reads it at one moment, 100
// lines are logged and 50 suppressed.
std::string Flood() {
  std::string flood;
  for (int i = 0; i < 150; ++i) absl::StrAppend(&flood, "line ", i, "\n");
  return flood + "tail";
}

// What `log` holds after the first `line`; "" when it holds no such line.
std::string After(const std::string& log, const std::string& line) {
  size_t at = log.find(line);
  return at == std::string::npos ? "" : log.substr(at + line.size());
}

// The count of the lines a flood suppressed is logged when the service's
// output ends with its run, before the unterminated tail, although no line
// follows it: not carried over to the next run's first line, nor lost.
TEST_F(ServiceHostTest, TheLinesAFloodSuppressedAreCountedWhenTheRunEnds) {
  scripts_["once"].output = Flood();
  exit_code_ = 0;
  ::testing::internal::CaptureStderr();
  EXPECT_OK(Connect("once", 1).status());
  EXPECT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(After(log, "capbrokerd: [once] line 99\n"),
              StartsWith("capbrokerd: service 'once': (50 lines of output suppressed)\n"
                         "capbrokerd: [once] tail\n"));
  EXPECT_THAT(log, Not(HasSubstr("line 100")));
}

// Likewise when the broker stops the service: the count is logged with
// what it wrote last.
TEST_F(ServiceHostTest, TheLinesAFloodSuppressedAreCountedWhenTheBrokerStops) {
  scripts_["svc"].output = Flood();
  ::testing::internal::CaptureStderr();
  EXPECT_OK(Connect("svc", 1).status());
  EXPECT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  host_->StopAll();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Report("svc").last_exit, "killed by SIGTERM");
  EXPECT_THAT(After(log, "capbrokerd: [svc] line 99\n"),
              StartsWith("capbrokerd: service 'svc': (50 lines of output suppressed)\n"
                         "capbrokerd: [svc] tail\n"));
}

TEST_F(ServiceHostTest, StopAllSaysWhenHowAServiceEndedIsNotKnown) {
  StartThenReapBehindTheHostsBack("once");
  host_->StopAll();
  EXPECT_EQ(Report("once").state, ServiceState::STOPPED);
  EXPECT_THAT(Report("once").last_exit, HasSubstr("No child processes"));
}

// A stop timeout for a service that exits by itself at SIGTERM: a safety
// bound, which the default (5 s) is not on a loaded machine where the
// service may be scheduled late.
constexpr absl::Duration kPatientStop = absl::Seconds(60);

// What a service says as it stops: more than its output pipe holds (64
// KiB), in lines of at most kMaxLineBytes (49 of them, within the ration of
// 100 a second), then a last line.
std::string ALongGoodbye() { return std::string(200000, 'x') + "\nbye\n"; }

// How many bytes of ALongGoodbye `log` shows as `service`'s output, and
// whether its last line is there.
size_t GoodbyeBytesLogged(const std::string& log, absl::string_view service) {
  const std::string prefix = absl::StrCat("capbrokerd: [", service, "] ");
  size_t bytes = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::ConsumePrefix(&line, prefix)) bytes += std::count(line.begin(), line.end(), 'x');
  }
  return bytes;
}

// A service that writes more than its pipe holds as the broker stops it is
// read meanwhile: it finishes, exits by itself, and all it said is logged.
// Unread, it would block in write() until the SIGKILL at the stop timeout.
TEST_F(ServiceHostTest, WhatAServiceWritesAsTheBrokerStopsItIsReadSoItCanFinish) {
  scripts_["svc"].output_at_sigterm = ALongGoodbye();
  stop_timeout_ = kPatientStop;
  MakeHost();
  ::testing::internal::CaptureStderr();
  EXPECT_OK(Connect("svc", 1).status());
  EXPECT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  StopAll();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Report("svc").last_exit, "exit status 0");
  EXPECT_EQ(GoodbyeBytesLogged(log, "svc"), 200000u);
  EXPECT_THAT(log, HasSubstr("capbrokerd: [svc] bye\n"));
  EXPECT_THAT(log, Not(HasSubstr("killing it")));
}

// Likewise for a service removed from the policy, which the loop stops.
TEST_F(ServiceHostTest, WhatAServiceRemovedFromThePolicyWritesAsItStopsIsRead) {
  scripts_["svc"].output_at_sigterm = ALongGoodbye();
  stop_timeout_ = kPatientStop;
  MakeHost();
  ::testing::internal::CaptureStderr();
  EXPECT_OK(Connect("svc", 1).status());
  EXPECT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  ReloadWithoutSvc();
  EXPECT_TRUE(RunUntil([&] { return !Hosts("svc"); }));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("capbrokerd: service 'svc': exited (exit status 0)"));
  EXPECT_EQ(GoodbyeBytesLogged(log, "svc"), 200000u);
  EXPECT_THAT(log, HasSubstr("capbrokerd: [svc] bye\n"));
}

// A service that ignores SIGTERM is killed at the stop timeout when the
// broker stops, and reaped before StopAll returns.
TEST_F(ServiceHostTest, StopAllKillsAServiceThatIgnoresSigtermAtTheStopTimeout) {
  scripts_["svc"].ignores_sigterm = true;
  stop_timeout_ = absl::Milliseconds(20);
  MakeHost();
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  StopAll();
  EXPECT_EQ(Report("svc").state, ServiceState::STOPPED);
  EXPECT_EQ(Report("svc").pid, 0);
  EXPECT_EQ(Report("svc").last_exit, "sent SIGKILL when the broker stopped");
  ASSERT_EQ(pids_.size(), 1u);
  EXPECT_TRUE(Reaped(pids_[0]));
}

// Likewise a service that ignores SIGTERM and floods its output: its output
// is never found empty, yet reading it does not hold the broker past the
// stop timeout (the outcome is checked, not the time: it is killed and
// StopAll returns, where it used to read on for as long as output came).
TEST_F(ServiceHostTest, StopAllKillsAServiceThatFloodsItsOutputAndIgnoresSigterm) {
  scripts_["svc"].ignores_sigterm = true;
  scripts_["svc"].endless_output = true;
  stop_timeout_ = absl::Milliseconds(20);
  MakeHost();
  ::testing::internal::CaptureStderr();
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  StopAll();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("capbrokerd: service 'svc': still running after SIGTERM; killing it"));
  EXPECT_EQ(Report("svc").last_exit, "sent SIGKILL when the broker stopped");
  ASSERT_EQ(pids_.size(), 1u);
  EXPECT_TRUE(Reaped(pids_[0]));
}

// Likewise a service removed from the policy that ignores SIGTERM: killed
// at the stop timeout, reaped, and forgotten.
TEST_F(ServiceHostTest, AServiceRemovedFromThePolicyThatIgnoresSigtermIsKilledAtTheStopTimeout) {
  scripts_["svc"].ignores_sigterm = true;
  stop_timeout_ = absl::Milliseconds(20);
  MakeHost();
  ::testing::internal::CaptureStderr();
  EXPECT_OK(Connect("svc", 1).status());
  EXPECT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  ReloadWithoutSvc();
  EXPECT_EQ(Report("svc").state, ServiceState::STOPPING);
  EXPECT_TRUE(RunUntil([&] { return !Hosts("svc"); }));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("capbrokerd: service 'svc': exited (still running after SIGTERM "
                             "(killed by SIGKILL))"));
  ASSERT_EQ(pids_.size(), 1u);
  EXPECT_TRUE(Reaped(pids_[0]));
}

// The delays `log` shows before `service`'s restarts, in order: "1ms".
std::vector<std::string> RestartDelays(const std::string& log, absl::string_view service) {
  const std::string prefix = absl::StrCat("capbrokerd: service '", service, "': restarting in ");
  std::vector<std::string> delays;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::ConsumePrefix(&line, prefix)) {
      delays.emplace_back(line.substr(0, line.find(' ')));
    }
  }
  return delays;
}

// README: the restart delay is restartDelayMs (1 for "flaky"), doubling per
// restart in a row, until restartLimit (4) restarts in a row were made.
// (The cap at 30 s: restart_delay_test.)
TEST_F(ServiceHostTest, TheRestartDelayDoublesPerRestartInARow) {
  exit_code_ = 1;  // every run fails at once
  ::testing::internal::CaptureStderr();
  EXPECT_OK(Connect("flaky", 1).status());
  EXPECT_TRUE(RunUntil([&] { return Report("flaky").state == ServiceState::FAILED; }));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(RestartDelays(log, "flaky"), ElementsAre("1ms", "2ms", "4ms", "8ms"));
  EXPECT_EQ(launches_, 5u);
}

// A run that lasted stable_run resets the count of restarts in a row: with
// every run that long, each restart is the first in a row, after the first
// delay, and the service is never given up on.
TEST_F(ServiceHostTest, AStableRunResetsTheRestartsInARow) {
  stable_run_ = absl::ZeroDuration();  // every run lasts that long
  MakeHost();
  const std::string log = CrashLoopUntilFiveRestarts();
  EXPECT_EQ(Report("flaky").restarts, 5u);
  EXPECT_THAT(RestartDelays(log, "flaky"), AllOf(::testing::SizeIs(5), Each("1ms")));
  EXPECT_THAT(log, Not(HasSubstr("(restart 2 of")));
}

// The host measures on its own clock (HostOptions::now: monotonic), never
// on the wall clock, which an administrator or NTP may step: set forward,
// it made a crash loop's short runs look stable. Here each run lasts
// stable_run (10 s) on the host's clock and a few ms on the wall clock:
// each restart is the first in a row.
TEST_F(ServiceHostTest, ARunIsMeasuredOnTheHostsClock) {
  clock_ = absl::Seconds(1000);
  clock_step_ = kStableRun;  // between the launch and the exit, at least that
  MakeHost();
  const std::string log = CrashLoopUntilFiveRestarts();
  EXPECT_THAT(log, Not(HasSubstr("(restart 2 of")));
}

// The start ration too: set back by an hour, the wall clock made every
// start of the hour before wait that hour. Here an hour passes on the
// host's clock and none on the wall clock: the start's turn has come.
TEST_F(ServiceHostTest, TheStartRationIsMeasuredOnTheHostsClock) {
  start_limit_ = {1, absl::Hours(1)};
  clock_ = absl::Seconds(1000);
  MakeHost();
  exit_code_ = 0;
  ASSERT_OK(Connect("once", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  *clock_ += absl::Hours(1);
  ASSERT_OK(Connect("once", 2).status());
  EXPECT_EQ(Report("once").state, ServiceState::STARTING);  // not BACKOFF
  EXPECT_EQ(launches_, 2u);
}

// And the uptime `capctl services` shows: from a wall clock set back, it
// wrapped (about 1.8e19 seconds).
TEST_F(ServiceHostTest, UptimeIsMeasuredOnTheHostsClock) {
  clock_ = absl::Seconds(1000);
  MakeHost();
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  *clock_ += absl::Hours(1);
  EXPECT_EQ(Report("svc").uptime_seconds, 3600u);
}

// Without a pid namespace, processes a service starts are not tracked: they
// outlive it. When it has a cgroup, whatever is left in it is killed when
// the service has exited (cgroup.kill), and the cgroup removed once empty;
// its report says they are not tracked.
TEST_F(ServiceHostTest, WhatAServiceLeavesInItsCgroupIsKilledWithIt) {
  const std::string hierarchy = testing::WritableCgroup2Mount();
  if (hierarchy.empty()) GTEST_SKIP() << "no writable cgroup v2 hierarchy here";
  const std::string cgroup = absl::StrCat(hierarchy, "/capbroker-host-test-", getpid());
  ASSERT_EQ(mkdir(cgroup.c_str(), 0755), 0) << strerror(errno);
  std::unique_ptr<testing::ProcessWatch> descendant;
  absl::Cleanup remove = [&] {
    if (access(cgroup.c_str(), F_OK) != 0) return;
    if (descendant != nullptr && descendant->Signal(SIGKILL)) descendant->WaitExited();
    EXPECT_EQ(rmdir(cgroup.c_str()), 0) << strerror(errno);
  };
  scripts_["once"].cgroup = cgroup;
  scripts_["once"].descendant = true;
  exit_code_ = 0;
  ASSERT_OK(Connect("once", 1).status());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(Report("once").missing,
            "descendants: not tracked without a pid namespace: its cgroup is killed when it ends");
  ASSERT_EQ(pids_.size(), 1u);
  for (absl::string_view pid : absl::StrSplit(testing::ReadWholeFile(cgroup + "/cgroup.procs"),
                                              '\n', absl::SkipEmpty())) {
    if (pid != absl::StrCat(pids_[0])) {
      descendant = std::make_unique<testing::ProcessWatch>(std::stoi(std::string(pid)));
    }
  }
  ASSERT_NE(descendant, nullptr) << "the service started no process";
  ASSERT_TRUE(descendant->valid());

  ASSERT_TRUE(RunUntil([&] { return access(cgroup.c_str(), F_OK) != 0; }))
      << "the cgroup is still there";
  EXPECT_EQ(Report("once").state, ServiceState::STOPPED);
  EXPECT_TRUE(descendant->WaitExited(absl::ZeroDuration()));
}

TEST_F(ServiceHostTest, ALaunchThatWillFailAgainFailsTheServiceAtOnce) {
  failures_ = {absl::FailedPreconditionError(
      "landlock is required but Landlock is not supported by this kernel")};
  EXPECT_THAT(Connect("svc", 1).status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(Report("svc").state, ServiceState::FAILED);
  EXPECT_THAT(Connect("svc", 2).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("it starts again after a policy reload")));
  EXPECT_EQ(launches_, 1u);
}

// The launch is the loop's work only when the child reports: a child stuck
// in its setup (on a hung file system) keeps nobody else waiting. It is
// "patient"'s (600 s to start), so that its start timer cannot fire first
// however slowly the other service's child runs.
TEST_F(ServiceHostTest, ALaunchStuckInItsSetupStallsNobody) {
  ASSERT_NO_FATAL_FAILURE(ConnectToAStuckLaunch("patient", 1));
  // Another service starts and serves meanwhile.
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> served, Connect("svc", 2));
  EXPECT_FALSE(served.has_value());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(loop_.answered[kClient][0], 2u);
  EXPECT_EQ(ClientAnswers()[0], "");
  EXPECT_EQ(Report("patient").state, ServiceState::STARTING);
  EXPECT_EQ(Report("svc").state, ServiceState::RUNNING);
}

// The start timeout covers the setup: a child stuck in it has its launch
// given up, and its waiting connect is answered with the reason. The child
// is then killed and reaped through the loop.
TEST_F(ServiceHostTest, ALaunchStuckInItsSetupTimesOut) {
  ASSERT_NO_FATAL_FAILURE(ConnectToAStuckLaunch("slow", 1));
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(loop_.answered[kClient][0], 1u);
  EXPECT_EQ(ClientAnswers()[0],
            "service 'slow' could not start: its sandbox was not set up within 200 ms "
            "(startTimeoutMs): the launch is given up");
  // restartLimit = 0: no other try.
  EXPECT_EQ(Report("slow").state, ServiceState::FAILED);
  EXPECT_EQ(Report("slow").pid, 0);
  ASSERT_TRUE(RunUntil([&] { return Reaped(pids_[0]); }));
}

// A failure the child reports is the answer of the connects waiting for it.
TEST_F(ServiceHostTest, AFailureTheChildReportsAnswersTheWaitingConnects) {
  scripts_["svc"].report_failure =
      absl::NotFoundError("program /usr/bin/svc: No such file or directory");
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("svc", 1));
  EXPECT_FALSE(waiting.has_value());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'svc' could not start: program /usr/bin/svc: No such file or directory");
  EXPECT_EQ(Report("svc").state, ServiceState::FAILED);
  ASSERT_EQ(pids_.size(), 1u);
  ASSERT_TRUE(RunUntil([&] { return Reaped(pids_[0]); }));
}

// The audit lines of a service's start grants, in order.
std::vector<std::string> StartLines(const std::string& audit) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(audit, '\n', absl::SkipEmpty())) {
    if (absl::StrContains(line, R"("kind":"start")")) lines.emplace_back(line);
  }
  return lines;
}

// A grant the host's check refuses (capbrokerd: a directory holding its
// policy file or socket) fails the start: the check sees each fd as made,
// nothing is launched, the refusal is on record as a denial with its
// reason, and no grant of that start is on record as granted, not even one
// made before the refused one.
TEST_F(ServiceHostTest, AGrantTheCheckRefusesIsOnRecordAsDeniedAndNoneAsGranted) {
  testing::TempDir dir;
  struct stat expected;
  ASSERT_EQ(stat(dir.path().c_str(), &expected), 0);
  std::vector<std::string> checked;
  bool refuse = true;
  check_grant_ = [&](absl::string_view name, int fd) {
    checked.emplace_back(name);
    struct stat st;
    EXPECT_EQ(fstat(fd, &st), 0);
    if (name != "conf") return absl::OkStatus();
    EXPECT_EQ(st.st_ino, expected.st_ino);
    return refuse ? absl::FailedPreconditionError("directory grant 'conf' is guarded")
                  : absl::OkStatus();
  };
  MakeHost();
  const std::string policy = absl::StrCat(
      R"(( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ),
                            ( name = "conf", directory = ( path = ")", dir.path(),
      R"(", access = read ) ) ],
  principals = [ ( name = "me", match = ( uid = 1000 ) ) ],
  services = [ ( name = "lister", command = [ "/usr/bin/svc" ], connect = [ "me" ],
                 readiness = exec, grants = [ "scratch", "conf" ] ) ] ))");
  Reload(policy);
  EXPECT_THAT(Connect("lister", 1).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("could not start: directory grant 'conf' is guarded")));
  EXPECT_THAT(checked, ElementsAre("scratch", "conf"));
  EXPECT_EQ(launches_, 0u);
  EXPECT_EQ(Report("lister").state, ServiceState::FAILED);
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 1u) << AuditText();
  EXPECT_THAT(lines[0], HasSubstr(R"("kind":"start","capability":"conf")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("decision":"denied")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("reason":"directory grant 'conf' is guarded")"));
  // Allowed: made, every one on record as granted, launched.
  refuse = false;
  // A changed service (its grants in another order) is started anew.
  Reload(absl::StrReplaceAll(policy, {{R"("scratch", "conf")", R"("conf", "scratch")"}}));
  ASSERT_OK(Connect("lister", 2).status());
  EXPECT_EQ(launches_, 1u);
  lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 3u) << AuditText();
  EXPECT_THAT(lines[1], AllOf(HasSubstr(R"("capability":"conf")"),
                              HasSubstr(R"("decision":"granted")")));
  EXPECT_THAT(lines[2], AllOf(HasSubstr(R"("capability":"scratch")"),
                              HasSubstr(R"("decision":"granted")")));
}

// A start grant that cannot be made (its directory is gone) fails the
// start the same way: on record as denied, with the path's error, and the
// grant made before it is not on record as granted (it was never handed
// out).
TEST_F(ServiceHostTest, AStartGrantThatCannotBeMadePutsNoneOnRecordAsGranted) {
  testing::TempDir dir;
  const std::string gone = dir.Join("gone");
  ASSERT_EQ(mkdir(gone.c_str(), 0755), 0);
  MakeHost();
  Reload(absl::StrCat(
      R"(( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ),
                            ( name = "data", directory = ( path = ")", gone,
      R"(", access = read ) ) ],
  principals = [ ( name = "me", match = ( uid = 1000 ) ) ],
  services = [ ( name = "lister", command = [ "/usr/bin/svc" ], connect = [ "me" ],
                 readiness = exec, grants = [ "scratch", "data" ] ) ] ))"));
  ASSERT_EQ(rmdir(gone.c_str()), 0);
  EXPECT_THAT(Connect("lister", 1).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("capability 'data': ")));
  EXPECT_EQ(launches_, 0u);
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 1u) << AuditText();
  EXPECT_THAT(lines[0], HasSubstr(R"("kind":"start","capability":"data")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("decision":"denied")"));
  EXPECT_THAT(lines[0], HasSubstr(gone));
}

// A start grant is delivered when the service's program runs (the launch
// reached execve). A start that fails after its grants' lines were written
// and before that (the launcher refused, the child failed its setup or its
// execve) puts a denial of each on record, "not delivered: " and why.
TEST_F(ServiceHostTest, StartGrantsOfAStartThatFailsBeforeExecveAreOnRecordAsNotDelivered) {
  failures_ = {absl::FailedPreconditionError("clone3: refused by the test")};
  EXPECT_THAT(Connect("granted", 1).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("refused by the test")));
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 2u) << AuditText();
  EXPECT_THAT(lines[0], AllOf(HasSubstr(R"("kind":"start","capability":"scratch")"),
                              HasSubstr(R"("decision":"granted","principal":"granted")")));
  EXPECT_THAT(lines[1], AllOf(HasSubstr(R"("kind":"start","capability":"scratch")"),
                              HasSubstr(R"("decision":"denied","principal":"granted")"),
                              HasSubstr(R"("reason":"not delivered: clone3: refused by the test")")));

  // The child's execve fails: its copies of the fds never reach a program.
  Reload(kPolicy);  // a fresh chance
  scripts_["granted"].report_failure =
      absl::PermissionDeniedError("execve(/usr/bin/svc): Permission denied");
  ASSERT_OK(Connect("granted", 2).status());
  ASSERT_TRUE(RunUntil([&] { return Report("granted").state == ServiceState::FAILED; }));
  lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 4u) << AuditText();
  EXPECT_THAT(lines[2], HasSubstr(R"("decision":"granted")"));
  EXPECT_THAT(lines[3], AllOf(HasSubstr(R"("decision":"denied","principal":"granted")"),
                              HasSubstr(R"("reason":"not delivered: execve(/usr/bin/svc): )"
                                        R"(Permission denied")")));

  // Its program ran: delivered, whatever happens to it later.
  scripts_["granted"].report_failure = absl::OkStatus();
  Reload(kPolicy);
  ASSERT_OK(Connect("granted", 3).status());
  ASSERT_TRUE(RunUntil([&] { return Report("granted").state == ServiceState::RUNNING; }));
  host_.reset();  // kills it
  lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 5u) << AuditText();
  EXPECT_THAT(lines[4], HasSubstr(R"("decision":"granted")"));
}

// A launch given up before execve (the service was removed from the policy
// while its sandbox was being set up) delivered nothing either.
TEST_F(ServiceHostTest, StartGrantsOfALaunchGivenUpAreOnRecordAsNotDelivered) {
  scripts_["granted"].stuck = true;
  ASSERT_OK(Connect("granted", 1).status());
  EXPECT_EQ(Report("granted").state, ServiceState::STARTING);
  ReloadEdited({{R"(( name = "granted",)", R"(( name = "renamed",)"}});
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 2u) << AuditText();
  EXPECT_THAT(lines[1], AllOf(HasSubstr(R"("decision":"denied","principal":"granted")"),
                              HasSubstr(R"("reason":"not delivered: service 'granted' was )"
                                        R"(removed from the policy")")));
}

// A launch still in its setup when a reload changes what its sandbox is
// made of is given up, its grants on record as not delivered, and the
// connect that waited for it is served by the new instance, which runs as
// the new spec says (user, group, program) and waits for nothing: the old
// one never ran.
TEST_F(ServiceHostTest, ALaunchInItsSetupWhenItsSettingsChangeIsGivenUpForANewOne) {
  scripts_["granted"].stuck = true;
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_EQ(Report("granted").state, ServiceState::STARTING);
  scripts_["granted"].stuck = false;  // the new instance's launch
  ReloadEdited({{R"(( name = "granted", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "granted", command = [ "/usr/bin/other" ], user = 4242, group = 4343,)"}});
  EXPECT_EQ(launches_, 2u) << "the new instance waits for nothing: the old one never ran";
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0], "");
  ASSERT_TRUE(RunUntil([&] { return Reaped(pids_[0]); }));
  const Identity& identity = loop_.identities[loop_.last_connection()];
  EXPECT_EQ(identity.uid, 4242u);
  EXPECT_EQ(identity.gid, 4343u);
  EXPECT_EQ(identity.exe, "/usr/bin/other");
  EXPECT_EQ(identity.pid, Report("granted").pid);
  EXPECT_EQ(identity.pid, pids_[1]);
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 3u) << AuditText();
  EXPECT_THAT(lines[1], AllOf(HasSubstr(R"("decision":"denied","principal":"granted")"),
                              HasSubstr(R"x("reason":"not delivered: service 'granted' restarts: )x"
                                        R"x(the reload changed its launch settings (command, )x"
                                        R"x(user, group)")x")));
}

// A launch whose program runs already (the child reached execve) when a
// reload changes its settings, though the loop has not read its report yet:
// the program has its grants (delivered: nothing on record says otherwise),
// and is stopped as a running instance, which the new one waits for, so
// that two instances never hold the same grants.
TEST_F(ServiceHostTest, ALaunchWhoseProgramRunsWhenItsSettingsChangeIsStoppedBeforeTheNewOne) {
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_EQ(Report("granted").state, ServiceState::STARTING);
  ASSERT_TRUE(WaitForReport(0));
  ReloadEdited({{R"(( name = "granted", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "granted", command = [ "/usr/bin/other" ],)"}});
  EXPECT_EQ(launches_, 1u) << "a second instance started while the old one ran";
  ASSERT_TRUE(RunUntil([&] { return launches_ == 2; }));
  EXPECT_TRUE(Reaped(pids_[0]));
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0], "");
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 2u) << AuditText();
  EXPECT_THAT(lines, Each(HasSubstr(R"("decision":"granted")")));
}

// So too at the start timeout: a program that ran is late with its
// readiness, not with its setup, and is killed as such.
TEST_F(ServiceHostTest, ALaunchWhoseProgramRunsAtTheStartTimeoutIsKilledForItsReadiness) {
  ASSERT_OK(Connect("notify", 1).status());
  ASSERT_TRUE(WaitForReport(0));
  // The timer was made before the report pipe: its callback runs first in
  // the turn where both are readable.
  ASSERT_TRUE(loop_.TurnOnceAllReadable());
  ASSERT_TRUE(RunUntil([&] { return !Report("notify").last_exit.empty(); }));
  EXPECT_EQ(Report("notify").last_exit,
            "did not become ready within 200 ms (killed by SIGKILL); its output is in the "
            "broker's log");
}

// The lines of `log` that say a process is being killed, in order.
std::vector<std::string> KillLines(const std::string& log) {
  std::vector<std::string> kills;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "killing it")) kills.emplace_back(line);
  }
  return kills;
}

// ... but one that the broker could not serve once its report was read
// there (Launched) is killed for that, once: not for its readiness too,
// which would blame the program for the broker's shortage (of fds, of epoll
// space) and put off, by a second kill_wait, the look after its SIGKILL.
TEST_F(ServiceHostTest, ALaunchFoundRunningAtTheStartTimeoutButUnservableIsKilledOnceForThat) {
  kill_wait_ = absl::Milliseconds(50);  // its timer looks after that (unwatched pidfd)
  MakeHost();
  ASSERT_OK(Connect("notify", 1).status());
  ASSERT_TRUE(WaitForReport(0));
  loop_.refuse_pidfd_watches = true;
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(loop_.TurnOnceAllReadable());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(KillLines(log), ElementsAre(HasSubstr("the broker could not serve it (epoll_ctl: Cannot "
                                           "allocate memory (refused by the test)); killing it")))
      << log;
  EXPECT_EQ(ClientAnswers(),
            std::vector<std::string>({"service 'notify' could not start: the broker could not "
                                      "serve it (epoll_ctl: Cannot allocate memory (refused by "
                                      "the test))"}));
  ASSERT_TRUE(RunUntil([&] { return !Report("notify").last_exit.empty(); }));
  EXPECT_THAT(Report("notify").last_exit,
              StartsWith("the broker could not serve it (epoll_ctl: Cannot allocate memory "
                         "(refused by the test)) (killed by SIGKILL)"));
}

// So too for a launch that fails as its report is read there, after its
// program started (Abandon finds that it may have run): it is killed for
// its failure, once, not for its readiness too.
TEST_F(ServiceHostTest, ALaunchThatFailsAtTheStartTimeoutAfterItsProgramStartedIsKilledOnce) {
  scripts_["notify"].report_failure = absl::InternalError("a malformed report");
  scripts_["notify"].execs_at_kill = true;
  ASSERT_OK(Connect("notify", 1).status());
  ASSERT_TRUE(WaitForReport(0));
  ::testing::internal::CaptureStderr();
  // The timer was made before the report pipe: its callback reads the
  // report, which fails the launch.
  ASSERT_TRUE(loop_.TurnOnceAllReadable());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(KillLines(log),
              ElementsAre(HasSubstr("a malformed report; its program had started; killing it")))
      << log;
  EXPECT_EQ(ClientAnswers(),
            std::vector<std::string>({"service 'notify' could not start: a malformed report; its "
                                      "program had started"}));
  ASSERT_TRUE(RunUntil([&] { return !Report("notify").last_exit.empty(); }));
  EXPECT_THAT(Report("notify").last_exit,
              StartsWith("a malformed report; its program had started (killed by SIGKILL)"));
}

// ... and at the broker's stop.
TEST_F(ServiceHostTest, ALaunchWhoseProgramRunsWhenTheBrokerStopsHadItsGrants) {
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_TRUE(WaitForReport(0));
  StopAll();
  EXPECT_TRUE(Reaped(pids_[0]));
  std::vector<std::string> lines = StartLines(AuditText());
  ASSERT_EQ(lines.size(), 1u) << AuditText();
  EXPECT_THAT(lines[0], HasSubstr(R"("decision":"granted")"));
  EXPECT_EQ(Report("granted").state, ServiceState::STOPPED);
}

// A launch that fails as a reload replaces its service (the reload reads
// its report, TakeLaunchReport) is not tried again: the log says so, no
// restart is scheduled, and none is counted, on the old instance or on the
// new one, which has its counts and serves the connect that waited.
TEST_F(ServiceHostTest, ALaunchThatFailsAsAReloadReplacesItIsNotRestarted) {
  scripts_["granted"].report_failure =
      absl::ResourceExhaustedError("clone3: Resource temporarily unavailable");
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_TRUE(WaitForReport(0));
  scripts_["granted"].report_failure = absl::OkStatus();  // the new instance's launch
  ::testing::internal::CaptureStderr();
  ReloadEdited({{R"(( name = "granted", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "granted", command = [ "/usr/bin/other" ],)"}});
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("service 'granted': could not start: clone3: Resource temporarily "
                             "unavailable; not restarting: a reload replaced it or removed it "
                             "from the policy\n"));
  EXPECT_THAT(log, Not(HasSubstr("restarting in")));
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  EXPECT_EQ(ClientAnswers()[0], "");
  EXPECT_EQ(Report("granted").restarts, 0u);
  EXPECT_EQ(launches_, 2u);
}

// So too as the broker stops: the service is left stopped, no restart
// counted.
TEST_F(ServiceHostTest, ALaunchThatFailsAsTheBrokerStopsIsNotRestarted) {
  scripts_["svc"].report_failure =
      absl::ResourceExhaustedError("clone3: Resource temporarily unavailable");
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(WaitForReport(0));
  ::testing::internal::CaptureStderr();
  StopAll();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("service 'svc': could not start: clone3: Resource temporarily "
                             "unavailable; not restarting: the broker is stopping\n"));
  EXPECT_THAT(log, Not(HasSubstr("restarting in")));
  EXPECT_EQ(ClientAnswers(), std::vector<std::string>({"the broker is stopping"}));
  EXPECT_EQ(Report("svc").state, ServiceState::STOPPED);
  EXPECT_EQ(Report("svc").restarts, 0u);
  EXPECT_TRUE(Reaped(pids_[0]));
}

// A reload that takes a start grant away from a running service restarts
// it: the old process is stopped, and the new one, started at the next
// connect once the old has exited, has no such grant.
TEST_F(ServiceHostTest, AReloadThatWithdrawsAStartGrantRestartsTheService) {
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  ASSERT_EQ(start_grants_, std::vector<size_t>({1}));
  ReloadEdited({{R"(restartDelayMs = 1, grants = [ "scratch" ] ),)", "restartDelayMs = 1 ),"}});
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("granted", 2));
  EXPECT_FALSE(waiting.has_value());
  EXPECT_EQ(launches_, 1u) << "a second instance started while the old one ran";
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 2; }));
  EXPECT_EQ(ClientAnswers()[1], "");
  EXPECT_TRUE(Reaped(pids_[0]));
  EXPECT_EQ(start_grants_, std::vector<size_t>({1, 0}));
  EXPECT_EQ(Report("granted").pid, pids_[1]);
}

// A restart a reload causes is no crash, and no fresh budget: the new
// instance keeps the old one's restarts in total and its last exit (what
// capctl services shows), and adds none ...
TEST_F(ServiceHostTest, AReloadRestartKeepsTheRestartCountsOfTheOldInstance) {
  exit_code_ = 1;  // the first run fails
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("svc").restarts == 1; }));
  exit_code_ = -1;  // the restart, not launched yet (BACKOFF), runs
  ASSERT_TRUE(RunUntil([&] { return Report("svc").state == ServiceState::RUNNING; }));
  const std::string last_exit = Report("svc").last_exit;
  ASSERT_FALSE(last_exit.empty());
  ReloadEdited({{R"(( name = "svc", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "svc", command = [ "/usr/bin/other" ],)"}});
  ASSERT_OK(Connect("svc", 2).status());
  ASSERT_TRUE(RunUntil([&] {
    return Report("svc").state == ServiceState::RUNNING && Report("svc").pid != pids_[1];
  }));
  EXPECT_EQ(launches_, 3u);
  EXPECT_EQ(Report("svc").restarts, 1u);
  EXPECT_EQ(Report("svc").last_exit, last_exit);
}

// ... and its restarts in a row: the back-off delay goes on doubling from
// where the old instance left it, and restartLimit still gives up on a
// crash loop that a reload restarted (the old instance's 2 restarts in a
// row, then 2 more, of at most 4).
TEST_F(ServiceHostTest, AReloadRestartKeepsTheRestartsInARowOfTheOldInstance) {
  start_limit_ = {100, absl::Milliseconds(1)};  // no start waits for its turn
  MakeHost();
  exit_code_ = 1;  // the first two runs fail
  ::testing::internal::CaptureStderr();
  ASSERT_OK(Connect("flaky", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("flaky").restarts == 2; }));
  exit_code_ = -1;  // the second restart, not launched yet (BACKOFF), runs
  ASSERT_TRUE(RunUntil([&] { return Report("flaky").state == ServiceState::RUNNING; }));
  ReloadEdited({{R"(( name = "flaky", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "flaky", command = [ "/usr/bin/other" ],)"}});
  exit_code_ = 1;  // every run of the new instance fails
  ASSERT_OK(Connect("flaky", 2).status());
  ASSERT_TRUE(RunUntil([&] { return Report("flaky").state == ServiceState::FAILED; }));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(RestartDelays(log, "flaky"), ElementsAre("1ms", "2ms", "4ms", "8ms"));
  EXPECT_THAT(log, HasSubstr("service 'flaky': gave up after 4 restarts in a row"));
  EXPECT_EQ(launches_, 6u);
  EXPECT_EQ(Report("flaky").restarts, 4u);
}

// ... and its start ration: a reload gives a service no fresh burst of
// starts. The old instance took the last of its burst (2); the new one
// waits for its turn (an hour), not launched.
TEST_F(ServiceHostTest, AReloadRestartKeepsTheStartRationOfTheOldInstance) {
  start_limit_ = {2, absl::Hours(1)};
  MakeHost();
  exit_code_ = 0;  // the first run ends cleanly: no restart
  ASSERT_OK(Connect("once", 1).status());
  ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::STOPPED; }));
  exit_code_ = -1;  // the second runs until it is stopped
  ASSERT_OK(Connect("once", 2).status());
  ASSERT_TRUE(RunUntil([&] { return Report("once").state == ServiceState::RUNNING; }));
  ::testing::internal::CaptureStderr();
  ReloadEdited({{R"(( name = "once", command = [ "/usr/bin/svc" ],)",
                 R"(( name = "once", command = [ "/usr/bin/other" ],)"}});
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("once", 3));
  EXPECT_FALSE(waiting.has_value());
  // The new instance is started once the old one has exited.
  ASSERT_TRUE(RunUntil([&] { return launches_ > 2 || Report("once").state == ServiceState::BACKOFF; }));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(launches_, 2u);
  EXPECT_EQ(Report("once").state, ServiceState::BACKOFF);
  EXPECT_THAT(log, HasSubstr("service 'once': started too often (2 starts at once, then one "
                             "every 1h): starting in "));
  EXPECT_TRUE(Reaped(pids_[1]));
}

// Who may connect and the restart settings apply as the service runs: a
// reload that changes only those leaves its process alone.
TEST_F(ServiceHostTest, AReloadThatChangesNoLaunchSettingLeavesTheProcessAlone) {
  ASSERT_OK(Connect("granted", 1).status());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  const pid_t pid = Report("granted").pid;
  // The capabilities renumbered too: grants are compared by what they name.
  ReloadEdited({{R"(( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],)",
                 R"(( capabilities = [ ( name = "first", memory = ( size = 4096 ) ),
                    ( name = "scratch", memory = ( size = 4096 ) ) ],)"},
                {R"(( name = "granted", command = [ "/usr/bin/svc" ], connect = [ "me" ], readiness = exec,
      restartDelayMs = 1,)",
                 R"(( name = "granted", command = [ "/usr/bin/svc" ], connect = [ "svc" ], readiness = notify,
      restartDelayMs = 7, acceptsFds = true, restart = always,)"}});
  EXPECT_EQ(launches_, 1u);
  EXPECT_EQ(Report("granted").pid, pid);
  EXPECT_EQ(Report("granted").state, ServiceState::RUNNING);
  for (const server::ServiceReport& report : host_->Report()) EXPECT_FALSE(report.removed);
}

// A connect that waited is on record as granted (the policy allowed it);
// when the service then fails to start, a denial of the same connect says
// that it was never delivered, and why.
TEST_F(ServiceHostTest, AWaitingConnectThatIsNotDeliveredIsOnRecord) {
  scripts_["svc"].report_failure =
      absl::NotFoundError("program /usr/bin/svc: No such file or directory");
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("svc", 1));
  EXPECT_FALSE(waiting.has_value());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  std::vector<std::string> lines = absl::StrSplit(AuditText(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << AuditText();
  EXPECT_THAT(lines[0], HasSubstr(R"("request":{"kind":"connect","capability":"svc")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("decision":"denied","principal":"me")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("reason":"not delivered: service 'svc' could not start: )"
                                  R"(program /usr/bin/svc: No such file or directory")"));
}

// Why a start failed can quote capability paths and the policy file's
// ("directory grant 'conf' is /x/etc, which holds the broker's policy file
// ..."). capctl services shows it to root and the broker's user only; a
// connect refused for it tells others that it failed and where to see why,
// with the same code. The audit line (the log is root's) keeps it whole.
TEST_F(ServiceHostTest, WhyAStartFailedIsToldToAdministratorsOnly) {
  testing::TempDir dir;
  const std::string guarded = absl::StrCat("directory grant 'conf' is ", dir.path(),
                                           ", which holds the broker's policy file ",
                                           dir.path(), "/policy.capnp");
  check_grant_ = [&](absl::string_view name, int) {
    return name == "conf" ? absl::FailedPreconditionError(guarded) : absl::OkStatus();
  };
  MakeHost();
  Reload(absl::StrCat(
      R"(( capabilities = [ ( name = "conf", directory = ( path = ")", dir.path(),
      R"(", access = read ) ) ],
  principals = [ ( name = "me", match = ( uid = 1000 ) ), ( name = "root", match = ( uid = 0 ) ) ],
  services = [ ( name = "lister", command = [ "/usr/bin/svc" ], connect = [ "me", "root" ],
                 readiness = exec, grants = [ "conf" ] ) ] ))"));
  // The start fails at once, for a user's connect.
  EXPECT_EQ(ConnectAs(1000, kClient, "lister", 1),
            "service 'lister' could not start; root and the broker's user see why in "
            "`capctl services`");
  EXPECT_EQ(Report("lister").state, ServiceState::FAILED);
  EXPECT_THAT(AuditText(), HasSubstr(absl::StrCat(
                               R"("decision":"denied","principal":"me","reason":"service )",
                               R"('lister' could not start: )", guarded)));
  // Failed since: the user is told so, root why.
  EXPECT_EQ(ConnectAs(1000, kClient, "lister", 2),
            "service 'lister' has failed; it starts again after a policy reload; root and "
            "the broker's user see why in `capctl services`");
  EXPECT_EQ(ConnectAs(0, kClient, "lister", 3),
            absl::StrCat("service 'lister' has failed (could not start: ", guarded,
                         "); it starts again after a policy reload"));
  EXPECT_EQ(Report("lister").last_exit, absl::StrCat("could not start: ", guarded));
}

// The same for connects that waited for the start: root's answer says why,
// a user's where to see it; both are on record with the reason.
TEST_F(ServiceHostTest, WhyAWaitedForStartFailedIsToldToAdministratorsOnly) {
  constexpr uint64_t kRoot = kClient + 1;
  const std::string missing = "program /srv/private/bin/svc: No such file or directory";
  scripts_["svc"].report_failure = absl::NotFoundError(missing);
  ReloadEdited({{R"(( name = "me", match = ( uid = 1000 ) ))",
                 R"(( name = "me", match = ( uid = 1000 ) ), ( name = "root", match = ( uid = 0 ) ))"},
                {R"(connect = [ "me" ])", R"(connect = [ "me", "root" ])"}});
  EXPECT_EQ(ConnectAs(1000, kClient, "svc", 1), "deferred");
  EXPECT_EQ(ConnectAs(0, kRoot, "svc", 2), "deferred");
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty() && !loop_.answers[kRoot].empty(); }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'svc' could not start; root and the broker's user see why in "
            "`capctl services`");
  EXPECT_EQ(loop_.answers[kRoot][0], absl::StrCat("service 'svc' could not start: ", missing));
  std::string audit = AuditText();
  size_t lines = 0;
  const std::string reason =
      absl::StrCat(R"("reason":"not delivered: service 'svc' could not start: )", missing);
  for (size_t at = 0; (at = audit.find(reason, at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 2u) << audit;
}

// A start that cannot get its timer (fds short) is refused the same way.
TEST_F(ServiceHostTest, WhyAServiceHadNoTimerIsToldToAdministratorsOnly) {
  loop_.refuse_watches = true;
  MakeHost();
  EXPECT_EQ(ConnectAs(1000, kClient, "notify", 1),
            "service 'notify' could not start; root and the broker's user see why in "
            "`capctl services`");
  EXPECT_THAT(AuditText(), HasSubstr("could not start: epoll_ctl: Cannot allocate memory"));
}

// A service's end of a connection is delivered at once or not at all;
// when the service's socket is full, the connect is refused and the client
// gets no end: no end waits in the broker while a client holds the other.
TEST_F(ServiceHostTest, AConnectToAServiceWhoseSocketIsFullIsRefused) {
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0], "");
  loop_.refuse_delivery = true;
  EXPECT_THAT(Connect("svc", 2).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("service 'svc' is busy")));
  loop_.refuse_delivery = false;
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> end, Connect("svc", 3));
  EXPECT_TRUE(end.has_value());
}

// The same for a connect that waited for the service to start: it is
// answered with the refusal, and on record as not delivered.
TEST_F(ServiceHostTest, AWaitingConnectToAServiceWhoseSocketIsFullIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("svc", 1));
  EXPECT_FALSE(waiting.has_value());
  loop_.refuse_delivery = true;
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_THAT(ClientAnswers()[0], HasSubstr("service 'svc' is busy"));
  EXPECT_EQ(Report("svc").state, ServiceState::RUNNING);
  EXPECT_THAT(AuditText(), HasSubstr(R"("reason":"not delivered: service 'svc' is busy)"));
}

// A connect waiting for a service to start was allowed by the policy of
// its time. A reload that takes the right away refuses it at once: a
// principal cut off by SIGHUP gets no connection that was still waiting.
TEST_F(ServiceHostTest, AReloadRefusesTheWaitingConnectsItNoLongerAllows) {
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 1));
  EXPECT_FALSE(waiting.has_value());
  ReloadEdited({{R"(( name = "notify", command = [ "/usr/bin/svc" ], connect = [ "me" ])",
                 R"(( name = "notify", command = [ "/usr/bin/svc" ], connect = [ "svc" ])"}});
  ASSERT_EQ(ClientAnswers().size(), 1u) << "the waiting connect was not answered";
  EXPECT_THAT(ClientAnswers()[0], HasSubstr("connect"));
  EXPECT_THAT(AuditText(), HasSubstr(R"("decision":"denied","principal":"me")"));
  EXPECT_THAT(AuditText(), HasSubstr(R"("reason":"not delivered: )"));
}

// A service removed from the policy and added back before its process
// exited starts only once that process is gone: two instances would share
// its grants. A connect in between waits for the new one.
TEST_F(ServiceHostTest, AServiceAddedBackWaitsForItsRemovedInstanceToExit) {
  ASSERT_OK(Connect("svc", 1).status());
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 1; }));
  ASSERT_EQ(launches_, 1u);
  ReloadWithoutSvc();
  Reload(kPolicy);
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("svc", 2));
  EXPECT_FALSE(waiting.has_value());
  EXPECT_EQ(launches_, 1u) << "a second instance started while the removed one ran";
  size_t waiting_reports = 0;
  size_t removed_reports = 0;
  for (const server::ServiceReport& report : host_->Report()) {
    if (report.name != "svc") continue;
    if (report.removed) {
      ++removed_reports;
    } else if (report.waits_for_removed_instance) {
      ++waiting_reports;
    }
  }
  EXPECT_EQ(waiting_reports, 1u) << "capctl services would not say why it waits";
  // The instance still running is reported too, under the same name: its
  // report says it was removed (the order of a services page needs it).
  EXPECT_EQ(removed_reports, 1u);
  ASSERT_TRUE(RunUntil([&] { return ClientAnswers().size() == 2; }));
  EXPECT_EQ(ClientAnswers()[1], "");
  EXPECT_TRUE(Reaped(pids_[0]));
  EXPECT_EQ(launches_, 2u);
}

// A starting service whose broker connection closes can never become
// ready: like a running one, it is stopped (SIGTERM, then SIGKILL at the
// stop timeout), and its waiting connects are told why it ended, not that
// it "did not become ready" within its start timeout. "patient" waits 600 s
// to become ready, so that on a loaded machine its start timer cannot fire
// first however slowly the loop turns.
TEST_F(ServiceHostTest, AStartingServiceThatClosesItsConnectionIsStoppedForThat) {
  scripts_["patient"].ignores_sigterm = true;
  stop_timeout_ = absl::Milliseconds(20);
  MakeHost();
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("patient", 1));
  EXPECT_FALSE(waiting.has_value());
  const uint64_t none = loop_.last_connection();
  ASSERT_TRUE(RunUntil([&] { return loop_.last_connection() != none; }));
  ASSERT_EQ(Report("patient").state, ServiceState::STARTING);
  host_->ConnectionLost(loop_.last_connection());
  ASSERT_TRUE(RunUntil([&] { return !ClientAnswers().empty(); }));
  EXPECT_EQ(ClientAnswers()[0],
            "service 'patient' exited before it was ready (still running without its broker "
            "connection after SIGTERM (killed by SIGKILL); its output is in the broker's log)");
  ASSERT_TRUE(RunUntil([&] { return Reaped(pids_[0]); }));
}

// One uid cannot take every place among the connects that may wait for a
// service to start.
TEST_F(ServiceHostTest, OneUidHasAtMostItsShareOfTheWaitingConnects) {
  for (uint64_t id = 1; id <= kMaxPendingConnectsPerUid; ++id) {
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", id));
    ASSERT_FALSE(waiting.has_value());
  }
  EXPECT_THAT(Connect("notify", 1000).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("uid 1000 has 64 connects waiting for service 'notify'")));
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> other, Connect("notify", 1001, 2000));
  EXPECT_FALSE(other.has_value());
}

// A hosted service's share is its own, not its uid's: every service
// without `user` runs as nobody on a root broker (on a per-user one, as
// the user, whose clients have that uid too), and one compromised service
// must not take the places of all the others.
TEST_F(ServiceHostTest, OneHostedServiceHasAtMostItsShareOfTheWaitingConnects) {
  constexpr uint32_t kNobody = 65534;
  constexpr uint64_t kA = kClient + 1, kB = kClient + 2;
  for (uint64_t id = 1; id <= kMaxPendingConnectsPerUid; ++id) {
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting,
                         Connect("notify", id, kNobody, kA, "svc-a"));
    ASSERT_FALSE(waiting.has_value());
  }
  EXPECT_THAT(Connect("notify", 1000, kNobody, kA, "svc-a").status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("service 'svc-a' has 64 connects waiting for service "
                                 "'notify'")));
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> other_service,
                       Connect("notify", 1, kNobody, kB, "svc-b"));
  EXPECT_FALSE(other_service.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> client, Connect("notify", 1, kNobody));
  EXPECT_FALSE(client.has_value());
}

// A client that hangs up takes its waiting connects with it: nothing is
// sent for them (nobody would read it), each is on record as not
// delivered, and its uid's places are free for its next connection.
TEST_F(ServiceHostTest, TheWaitingConnectsOfAClientThatHungUpAreWithdrawn) {
  constexpr uint64_t kOther = kClient + 1;
  for (uint64_t id = 1; id <= kMaxPendingConnectsPerUid; ++id) {
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", id));
    ASSERT_FALSE(waiting.has_value());
  }
  ASSERT_OK(Connect("notify", 1, 2000, kOther).status());  // another client's stays
  const uint64_t denials = stats_.denials;
  host_->ClientGone(kClient, "the client hung up");
  EXPECT_TRUE(ClientAnswers().empty());
  EXPECT_EQ(stats_.denials - denials, kMaxPendingConnectsPerUid);
  EXPECT_THAT(AuditText(), HasSubstr(R"("reason":"not delivered: the client hung up")"));
  for (uint64_t id = 1; id <= kMaxPendingConnectsPerUid; ++id) {
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting,
                         Connect("notify", 100 + id, 1000, kOther + 1));
    ASSERT_FALSE(waiting.has_value());
  }
  // Those of the client that left count no more: the new ones alone fill
  // the share.
  EXPECT_THAT(Connect("notify", 1000, 1000, kOther + 1).status(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(ClientAnswers().empty());
}

// A waiting connect is known by its connection and request id: a second
// connect with the same pair, to any service, is refused while the first
// waits, so that withdrawing or answering one never takes the other with
// it. The first stays waiting, and is on record when its client goes.
TEST_F(ServiceHostTest, AConnectWhoseRequestIdIsAlreadyWaitingIsRefused) {
  constexpr uint64_t kOther = kClient + 1;
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 7));
  ASSERT_FALSE(waiting.has_value());
  for (const char* service : {"notify", "patient"}) {
    EXPECT_THAT(Connect(service, 7).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("request id 7 is already waiting for service 'notify' to "
                                   "start on this connection; give each request its own id")))
        << service;
  }
  // Another connection's id 7 is its own.
  ASSERT_OK(Connect("notify", 7, 1000, kOther).status());
  host_->ClientGone(kClient, "the client hung up");
  EXPECT_THAT(AuditText(), HasSubstr(R"("reason":"not delivered: the client hung up")"));
  EXPECT_TRUE(ClientAnswers().empty());
}

// A client the broker disconnected (it did not read its replies) is on
// record so, not as one that hung up.
TEST_F(ServiceHostTest, TheWaitingConnectsOfAClientTheBrokerClosedSayWhy) {
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 1));
  ASSERT_FALSE(waiting.has_value());
  host_->ClientGone(kClient, "the broker closed the client's connection: it did not read "
                             "its replies, and its queue was full");
  EXPECT_THAT(AuditText(), HasSubstr(R"("reason":"not delivered: the broker closed the )"
                                     R"(client's connection: it did not read its replies, )"
                                     R"(and its queue was full")"));
  EXPECT_THAT(AuditText(), Not(HasSubstr("hung up")));
}

// The connects that waited are answered in turn once the service is
// ready; a client whose connection closes on the way (a reply it had no
// room for) has none of its later connects handed to the service, and
// each is on record as not delivered. The one whose reply failed carries
// its principal, for the loop's line that says it was dropped.
// "patient": its start timer cannot fire before its launch is done,
// however slowly the child runs.
TEST_F(ServiceHostTest, ConnectsOfAClientClosedWhileTheyAreAnsweredAreNotDelivered) {
  constexpr uint64_t kOther = kClient + 1;
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_OK(Connect("patient", id).status());
    if (id < 3) {
      ASSERT_OK(Connect("patient", 10 + id, 2000, kOther).status());
    }
  }
  const uint64_t none = loop_.last_connection();
  ASSERT_TRUE(RunUntil([&] { return loop_.last_connection() != none; }));
  const uint64_t service = loop_.last_connection();
  loop_.fail_sends_to.insert(kClient);
  const uint64_t denials = stats_.denials;
  ASSERT_OK(host_->Ready("patient"));
  EXPECT_TRUE(loop_.answers[service].empty()) << "handed out before the reply to ready";
  host_->AnswerWaiting("patient");  // as the loop does once that reply is queued
  // The first connect of kClient reached the service before its reply
  // failed (the service's end goes first); its other two did not.
  EXPECT_EQ(loop_.answers[service].size(), 3u) << "connections handed to the service";
  EXPECT_EQ(loop_.answered[kOther], (std::vector<uint64_t>{11, 12}));
  EXPECT_EQ(stats_.denials - denials, 2u);
  std::string audit = AuditText();
  size_t lines = 0;
  for (size_t at = 0; (at = audit.find("not delivered", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 2u) << audit;
  EXPECT_EQ(loop_.dropped[kClient], (std::vector<std::string>{"me"}));
}

// A waiting connect that the new policy allows only through another
// principal is refused: the service would be told a principal the audit
// log never recorded for it. The client asks again.
TEST_F(ServiceHostTest, AReloadRefusesAWaitingConnectNowAllowedByAnotherPrincipal) {
  ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> waiting, Connect("notify", 1));
  EXPECT_FALSE(waiting.has_value());
  ReloadEdited({{R"(( name = "me", match = ( uid = 1000 ) ))",
                 R"(( name = "ops", match = ( uid = 1000 ) ))"},
                {R"(connect = [ "me" ])", R"(connect = [ "ops" ])"}});
  ASSERT_EQ(ClientAnswers().size(), 1u) << "the waiting connect was not answered";
  EXPECT_EQ(ClientAnswers()[0],
            "the policy was reloaded while this connect waited, and now allows it as "
            "principal 'ops', not 'me': ask again");
}


// The host with the broker's real loop, for what depends on the order in
// which the loop sends: a scripted launch, a client stood in for by a
// connection the test holds, and the service's end of its broker
// connection, which the test reads as the service would.
class ServiceHostWithLoopTest : public ::testing::Test {
 protected:
  // svc-a and svc-b differ only in their names' last letter: their start
  // lines are as long as each other. Their grants are shared memory, made
  // with the policy: a start dups them, and grows no file.
  static constexpr char kNotifyPolicy[] = R"(( principals = [ ( name = "me", match = ( uid = 1000 ) ) ],
    capabilities = [ ( name = "one", memory = ( size = 4096, shared = true ) ),
                     ( name = "two", memory = ( size = 4096, shared = true ) ) ],
    services = [ ( name = "notify", command = [ "/usr/bin/svc" ], connect = [ "me" ],
                   readiness = notify, startTimeoutMs = 60000, restart = never ),
                 ( name = "svc-a", command = [ "/usr/bin/svc" ], connect = [ "me" ],
                   readiness = exec, grants = [ "one", "two" ] ),
                 ( name = "svc-b", command = [ "/usr/bin/svc" ], connect = [ "me" ],
                   readiness = exec, grants = [ "one", "two" ] ) ] ))";

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(kNotifyPolicy, "t.capnp"));
    ASSERT_OK(handler_.SetPolicy(std::move(policy)));
    HostOptions options;
    options.launcher = [this](const sandbox::SandboxSpec& spec)
        -> absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> {
      // The service's end, which the sandbox would hand the service.
      service_end_ = UniqueFd(fcntl(spec.broker_fd, F_DUPFD_CLOEXEC, 0));
      absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> started =
          FakeLaunch::Start(Script());
      if (started.ok()) report_ = UniqueFd(fcntl((*started)->report_fd(), F_DUPFD_CLOEXEC, 0));
      return started;
    };
    host_ = std::make_unique<ServiceHost>(handler_, loop_, std::move(options));
    handler_.SetServiceDirectory(host_.get());
    host_->PolicyChanged();
  }

  void TearDown() override {
    handler_.SetServiceDirectory(nullptr);
    host_.reset();  // before the loop it borrows
  }

  absl::StatusOr<std::optional<UniqueFd>> Connect(absl::string_view service) {
    server::ConnectRequest request;
    request.connection_id = kClient;
    request.request_id = ++last_request_id_;  // each its own, as a client's
    request.client.uid = 1000;
    request.principal = "me";
    return host_->Connect(*handler_.policy().FindService(service), request);
  }

  // The audit log from byte `from` on, after a flush.
  std::string AuditTextFrom(off_t from) {
    audit_.Flush();
    std::string text;
    char buffer[4096];
    ssize_t n;
    for (off_t at = from; (n = pread(audit_file_.get(), buffer, sizeof buffer, at)) > 0;
         at += n) {
      text.append(buffer, static_cast<size_t>(n));
    }
    return text;
  }

  // Runs the loop for one turn, after what is readable now.
  void OneTurn() {
    UniqueFd listener(eventfd(0, EFD_CLOEXEC));  // never readable
    UniqueFd control(eventfd(1, EFD_CLOEXEC));   // readable at once
    ASSERT_OK(loop_.Serve(listener.get(), control.get(), [] { return true; }));
  }

  UniqueFd audit_file_{memfd_create("audit", MFD_CLOEXEC)};
  audit::AuditLog audit_{audit_file_.get()};
  server::Stats stats_;
  server::RequestHandler handler_{audit_, stats_};
  server::BrokerLoop loop_{handler_, audit_, stats_, server::Limits()};
  std::unique_ptr<ServiceHost> host_;
  UniqueFd service_end_;  // the service's end of its broker connection
  UniqueFd report_;       // the launch's report pipe, readable once it is done
  uint64_t last_request_id_ = 0;  // Connect's
};

// What a start grant's open does to the file system waits for its line,
// as a client's grant does: with the log failing (every write ENOSPC) the
// start fails, the file to be emptied keeps its content and the file made
// is removed again; with the log working, the file is emptied before the
// service gets it.
TEST_F(ServiceHostWithLoopTest, AStartNotOnRecordEmptiesNoFileAndLeavesNoneMade) {
  testing::TempDir dir;
  const std::string emptied = dir.WriteFile("emptied", "8 bytes.");
  const std::string made = dir.Join("made");
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(absl::StrCat(R"(( capabilities = [
      ( name = "e", file = ( path = ")", emptied, R"(", access = write, truncate = true ) ),
      ( name = "m", file = ( path = ")", made, R"(", access = write, create = true ) ) ],
    services = [ ( name = "svc-f", command = [ "/usr/bin/svc" ], readiness = exec,
                   grants = [ "e", "m" ] ),
                 ( name = "svc-g", command = [ "/usr/bin/svc" ], readiness = exec,
                   grants = [ "e", "m" ] ) ] ))"),
                                                  "t.capnp"));
  ASSERT_OK(handler_.SetPolicy(std::move(policy)));
  host_->PolicyChanged();
  UniqueFd log(fcntl(audit_file_.get(), F_DUPFD_CLOEXEC, 0));
  UniqueFd full(open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(log.valid() && full.valid());
  ASSERT_EQ(dup3(full.get(), audit_file_.get(), O_CLOEXEC), audit_file_.get());
  EXPECT_THAT(Connect("svc-f").status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not start")));
  EXPECT_EQ(testing::ReadWholeFile(emptied), "8 bytes.") << "emptied, with no grant on record";
  struct stat st;
  EXPECT_NE(stat(made.c_str(), &st), 0) << "made, with no grant on record";

  ASSERT_EQ(dup3(log.get(), audit_file_.get(), O_CLOEXEC), audit_file_.get());  // mended
  ASSERT_OK(Connect("svc-g").status());
  EXPECT_EQ(testing::ReadWholeFile(emptied), "");
  EXPECT_EQ(stat(made.c_str(), &st), 0);
}

// A notify service's connects that waited for its start are answered
// after its `ready` is: the reply to Ready() comes before the first
// `incoming`, so that the service's Ready() receives no connection, and a
// loop that measures its fd table after it counts none as used for good.
TEST_F(ServiceHostWithLoopTest, TheReadyReplyComesBeforeTheConnectsThatWaited) {
  // A client's connection, as the loop serves it (its replies are queued).
  ASSERT_OK_AND_ASSIGN(auto client, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(client.first.get(), F_SETFL, O_NONBLOCK), 0);
  Identity stand_in;
  stand_in.service = "client";
  ASSERT_OK_AND_ASSIGN(uint64_t client_id,
                       loop_.AddServiceConnection(std::move(client.first), stand_in));
  constexpr int kWaiting = 3;
  for (uint64_t id = 1; id <= kWaiting; ++id) {
    server::ConnectRequest request;
    request.connection_id = client_id;
    request.request_id = id;
    request.client.uid = 1000;
    request.principal = "me";
    ASSERT_OK_AND_ASSIGN(std::optional<UniqueFd> end,
                         host_->Connect(*handler_.policy().FindService("notify"), request));
    ASSERT_FALSE(end.has_value()) << "connect " << id << " did not wait";
  }
  ASSERT_TRUE(service_end_.valid() && report_.valid());
  ASSERT_EQ(fcntl(service_end_.get(), F_SETFL, O_NONBLOCK), 0);  // read below until empty
  // The child has set itself up: the loop finishes the launch.
  pollfd launched{report_.get(), POLLIN, 0};
  ASSERT_EQ(poll(&launched, 1, kTurnTimeoutMs), 1) << "the launch never finished";
  const uint64_t connections = stats_.connections;
  OneTurn();
  ASSERT_EQ(stats_.connections, connections + 1) << "the service's connection is not served";

  // The service says hello, then that it is ready, as Client::Ready does.
  capnp::MallocMessageBuilder ready_message;
  auto ready = ready_message.initRoot<schema::Request>();
  ready.setId(2);
  ready.setReady();
  ASSERT_EQ(testing::RawSend(service_end_.get(),
                             testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  OneTurn();  // one request of a connection a turn
  ASSERT_EQ(testing::RawSend(service_end_.get(), testing::Encode(ready_message)), 0);
  OneTurn();

  // What the service receives, in order: "hello", "ready", or "incoming".
  std::vector<std::string> received;
  wire::ReceiveBuffer buffer;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> datagram,
                         wire::ReceiveDatagram(service_end_.get(), buffer));
    if (!datagram.has_value()) break;
    capnp::FlatArrayMessageReader reader(datagram->words);
    auto reply = reader.getRoot<schema::Reply>();
    ASSERT_FALSE(reply.isError()) << reply.getError().getMessage().cStr();
    received.push_back(reply.isHello() ? "hello"
                       : reply.isReady() ? "ready"
                       : reply.isIncoming() ? "incoming"
                                            : "other");
  }
  EXPECT_THAT(received, ElementsAre("hello", "ready", "incoming", "incoming", "incoming"));
  EXPECT_EQ(host_->Report()[0].state, ServiceState::RUNNING);
  // And the client has its ends.
  ASSERT_EQ(fcntl(client.second.get(), F_SETFL, O_NONBLOCK), 0);
  std::vector<uint64_t> connected;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> datagram,
                         wire::ReceiveDatagram(client.second.get(), buffer));
    if (!datagram.has_value()) break;
    capnp::FlatArrayMessageReader reader(datagram->words);
    auto reply = reader.getRoot<schema::Reply>();
    ASSERT_FALSE(reply.isError()) << reply.getError().getMessage().cStr();
    EXPECT_EQ(datagram->fds.size(), 1u);
    connected.push_back(reply.getId());
  }
  EXPECT_THAT(connected, ElementsAre(1, 2, 3));
}

// As reported: a flush that wrote the first of a start's grant lines and
// lost the rest (a full disk takes what fits; here RLIMIT_FSIZE cuts the
// write short, as for the broker, which ignores SIGXFSZ) left the first on
// record as granted, with no "not delivered" after it, and counted both as
// grants. Now the line written is followed by its denial, the line lost
// gets none, and the counters say what the log does.
TEST_F(ServiceHostWithLoopTest, AStartWhoseGrantLinesAreWrittenInPartSaysWhichWereNotDelivered) {
  // svc-a's start writes the lines svc-b's will, each as long.
  ASSERT_OK(Connect("svc-a").status());
  std::vector<std::string> lines = absl::StrSplit(AuditTextFrom(0), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  const off_t line_bytes = static_cast<off_t>(lines[0].size() + 1);
  const uint64_t grants = stats_.grants;
  ASSERT_EQ(grants, 2u);
  struct stat st;
  ASSERT_EQ(fstat(audit_file_.get(), &st), 0);
  const off_t before = st.st_size;

  // The next write takes svc-b's first line and half of its second.
  rlimit unlimited;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &unlimited), 0);
  struct sigaction ignore = {}, previous = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &previous), 0);
  rlimit cut = unlimited;
  cut.rlim_cur = static_cast<rlim_t>(before + line_bytes + line_bytes / 2);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &cut), 0);
  absl::StatusOr<std::optional<UniqueFd>> started = Connect("svc-b");
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &unlimited), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &previous, nullptr), 0);
  EXPECT_THAT(started.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not start")));

  // svc-b's first line whole, the fragment of its second (ended by the
  // next flush), then the denial of the first: the second was never on
  // record.
  lines = absl::StrSplit(AuditTextFrom(before), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << AuditTextFrom(before);
  EXPECT_THAT(lines[0], AllOf(HasSubstr(R"("capability":"one")"),
                              HasSubstr(R"("decision":"granted","principal":"svc-b")")));
  EXPECT_EQ(lines[1].size(), static_cast<size_t>(line_bytes / 2));
  EXPECT_THAT(lines[1], Not(HasSubstr(R"("decision")")));
  EXPECT_THAT(lines[2], AllOf(HasSubstr(R"("capability":"one")"),
                              HasSubstr(R"("decision":"denied","principal":"svc-b")"),
                              HasSubstr(R"("reason":"not delivered: the audit lines of its )"
                                        R"(grants could not be written")")));
  EXPECT_EQ(stats_.grants, grants + 1);
  EXPECT_EQ(stats_.denials, 1u);
}

}  // namespace
}  // namespace capbroker::service

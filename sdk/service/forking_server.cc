#include "sdk/service/forking_server.h"

#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/try_accept.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/framing.h"

namespace capbroker {
namespace {

// Events taken per epoll_wait; more simply wait for the next turn.
constexpr int kEventsPerTurn = 64;
// How often killed_ is looked at while it is not empty: those children
// have no pidfd to wake the loop.
constexpr int kKilledPollMs = 10;
// How long destruction waits for the workers it killed.
constexpr int64_t kStopWaitMs = 1000;
// A worker's exit status when it could not set itself up.
constexpr int kWorkerSetupFailed = 2;

std::string Describe(const Peer& peer) {
  return absl::StrCat("principal '", peer.principal, "' (uid ", peer.uid, ", pid ", peer.pid,
                      ")");
}

std::string DescribeExit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return absl::StrCat("exited with status ", info.si_status);
  return absl::StrCat("was killed by signal ", info.si_status, " (", strsignal(info.si_status),
                      ")");
}

int64_t MonotonicMs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

// Closes every fd of this process but those in `keep`.
absl::Status CloseAllBut(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int next = 0;
  for (int fd : keep) {
    if (fd < 0 || static_cast<unsigned int>(fd) < next) continue;
    if (static_cast<unsigned int>(fd) > next && close_range(next, fd - 1, 0) != 0) {
      return ErrnoStatus(errno, absl::StrCat("close_range(", next, ", ", fd - 1, ")"));
    }
    next = static_cast<unsigned int>(fd) + 1;
  }
  if (close_range(next, ~0u, 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("close_range(", next, ", ~0)"));
  }
  return absl::OkStatus();
}

}  // namespace

ForkingServer::ForkingServer(Client& broker, RequestHandler& handler, Options options)
    : broker_(broker),
      handler_(handler),
      options_(std::move(options)),
      log_(options_.max_log_lines_per_second) {}

ForkingServer::~ForkingServer() {
  if (!started_) return;
  stopping_ = true;
  // Only the workers' exits matter now.
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, broker_.fd(), nullptr);
  for (const auto& [pidfd, worker] : workers_) {
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  }
  const int64_t deadline = MonotonicMs() + kStopWaitMs;
  while (!workers_.empty() || !killed_.empty()) {
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) break;
    epoll_event events[kEventsPerTurn];
    int timeout = static_cast<int>(killed_.empty() ? left : std::min<int64_t>(left, kKilledPollMs));
    int n = epoll_wait(epoll_.get(), events, kEventsPerTurn, timeout);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) Reap(events[i].data.fd);
    ReapKilled();
  }
}

absl::Status ForkingServer::Init() {
  CB_ASSIGN_OR_RETURN(epoll_, TakeFd(epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = broker_.fd();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, broker_.fd(), &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD, broker fd=", broker_.fd(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ForkingServer::Run() {
  for (;;) {
    CB_ASSIGN_OR_RETURN(bool serving, Turn(-1));
    if (!serving) return absl::OkStatus();
  }
}

absl::StatusOr<bool> ForkingServer::Turn(int timeout_ms) {
  if (!started_) {
    CB_RETURN_IF_ERROR(Init());
    started_ = true;
    // Connections the Client queued during Ready() show no readiness on
    // the fd: take them now, and do not wait after that work.
    CB_ASSIGN_OR_RETURN(bool open, AcceptAll());
    if (!open) return false;
    timeout_ms = 0;
  }
  if (!killed_.empty() && (timeout_ms < 0 || timeout_ms > kKilledPollMs)) {
    timeout_ms = kKilledPollMs;
  }
  epoll_event events[kEventsPerTurn];
  int n = epoll_wait(epoll_.get(), events, kEventsPerTurn, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return true;
    return ErrnoStatus(errno, "epoll_wait");
  }
  ReapKilled();
  bool broker_ready = false;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == broker_.fd()) {
      broker_ready = true;
    } else {
      Reap(events[i].data.fd);
    }
  }
  // New connections after the exits: a slot freed by a worker that exited
  // before the connection came is free for it.
  if (broker_ready) return AcceptAll();
  return true;
}

absl::StatusOr<bool> ForkingServer::AcceptAll() {
  for (;;) {
    absl::StatusOr<std::optional<IncomingConnection>> next = TryAccept(broker_);
    if (!next.ok()) {
      if (next.status().code() == absl::StatusCode::kUnavailable) return false;
      return next.status();
    }
    if (!next->has_value()) return true;
    Start(std::move(**next));
  }
}

size_t ForkingServer::worker_count(uint32_t uid) const {
  auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second;
}

absl::Status ForkingServer::OverLimit(const Peer& peer) const {
  // Killed children not reaped yet are processes still: they count.
  if (workers_.size() + killed_.size() >= options_.max_workers) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the service serves at most ", options_.max_workers, " connections at once"));
  }
  if (worker_count(peer.uid) >= options_.max_workers_per_uid) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the service serves at most ", options_.max_workers_per_uid,
                     " connections of uid ", peer.uid, " at once"));
  }
  return absl::OkStatus();
}

void ForkingServer::Start(IncomingConnection incoming) {
  Peer peer{incoming.principal, incoming.uid, incoming.gid, incoming.pid};
  if (absl::Status over = OverLimit(peer); !over.ok()) {
    Refuse(incoming.fd.get(), peer, over);
    return;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    Refuse(incoming.fd.get(), peer,
           absl::ResourceExhaustedError(absl::StrCat(
               "no worker process could be started for the connection: ",
               ErrnoStatus(errno, "fork").message())));
    return;
  }
  if (pid == 0) ServeInWorker(std::move(incoming), parent);
  // The child cannot be reaped by anyone else before we wait for it, so
  // `pid` names it until then: pidfd_open names the right process.
  Worker worker;
  worker.pid = pid;
  worker.peer = std::move(peer);
  worker.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  absl::Status watched = worker.pidfd.valid()
                             ? absl::OkStatus()
                             : ErrnoStatus(errno, absl::StrCat("pidfd_open(", pid, ")"));
  if (watched.ok()) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = worker.pidfd.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, worker.pidfd.get(), &event) != 0) {
      watched = ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD, pidfd of ", pid, ")"));
    }
  }
  if (!watched.ok()) {
    // A worker nothing would reap or count: it goes (ENOMEM, EMFILE). It
    // may have begun to serve, so the client gets no refusal, only the
    // end of the connection.
    log_.Line(absl::StrCat("killed the worker (pid ", pid, ") of ", Describe(worker.peer),
                           ": cannot watch it: ", watched.message()));
    kill(pid, SIGKILL);
    killed_.push_back(pid);
    return;
  }
  ++per_uid_[worker.peer.uid];
  const int key = worker.pidfd.get();
  workers_.emplace(key, std::move(worker));
  // `incoming.fd`, this process's copy of the connection, closes here.
}

void ForkingServer::ServeInWorker(IncomingConnection incoming, pid_t parent) {
  // Dies with the main process, whose death would otherwise leave it
  // serving unsupervised; the getppid check covers a main process that
  // died before the prctl.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(kWorkerSetupFailed);
  const std::string who =
      Describe(Peer{incoming.principal, incoming.uid, incoming.gid, incoming.pid});
  std::vector<int> keep = options_.worker_fds;
  keep.insert(keep.end(), {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, incoming.fd.get()});
  absl::Status status = CloseAllBut(std::move(keep));
  if (status.ok()) {
    ConnectionLoop loop(std::move(incoming), handler_, options_.worker_loop);
    status = loop.Run();
  }
  if (!status.ok()) {
    std::fprintf(stderr, "worker of %s: %s\n", who.c_str(), status.ToString().c_str());
  }
  // _exit, not exit or a return: the objects of the main process this copy
  // holds must not be destroyed here (their fds are closed, their numbers
  // may have been reused), nor its atexit handlers run or its stdio
  // buffers flushed a second time.
  _exit(status.ok() ? 0 : 1);
}

void ForkingServer::Refuse(int connection, const Peer& peer, const absl::Status& reason) {
  log_.Line(absl::StrCat("refused a connection of ", Describe(peer), ": ", reason.message()));
  capnp::MallocMessageBuilder reply(64);
  absl::Status sent = CatchKj("refusal reply", [&]() -> absl::Status {
    // Without a reply of its protocol the connection just closes: end of
    // stream.
    if (!handler_.SetRefusal(reason, reply)) return absl::OkStatus();
    CB_ASSIGN_OR_RETURN(wire::OutgoingFrame frame, wire::OutgoingFrame::Of(reply));
    // Never blocks: a new connection's queue is empty, and if it were not
    // the reply would be dropped, not waited for.
    CB_RETURN_IF_ERROR(SetNonBlocking(connection, true));
    return wire::SendDatagram(connection, frame.iov(), frame.iov_count(), {}).status();
  });
  // A client gone already is no news; anything else is the service's bug.
  if (!sent.ok() && sent.code() != absl::StatusCode::kUnavailable) {
    log_.Line(absl::StrCat("cannot send the refusal: ", sent.ToString()));
  }
}

void ForkingServer::Reap(int pidfd) {
  auto it = workers_.find(pidfd);
  if (it == workers_.end()) return;
  Worker& worker = it->second;
  siginfo_t info{};
  if (waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) != 0) {
    if (errno == EINTR) return;  // still readable: the next turn
    // ECHILD would mean someone else reaped it: it is gone either way.
    log_.Line(absl::StrCat("waitid(worker pid ", worker.pid, "): ", strerror(errno)));
  } else if (info.si_pid == 0) {
    return;  // not exited after all
  } else if (!(info.si_code == CLD_EXITED && info.si_status == 0) &&
             !(stopping_ && info.si_code == CLD_KILLED && info.si_status == SIGKILL)) {
    log_.Line(absl::StrCat("the worker (pid ", worker.pid, ") of ", Describe(worker.peer), " ",
                           DescribeExit(info)));
  }
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, pidfd, nullptr);
  auto uid = per_uid_.find(worker.peer.uid);
  if (uid != per_uid_.end() && --uid->second == 0) per_uid_.erase(uid);
  workers_.erase(it);  // closes the pidfd
}

void ForkingServer::ReapKilled() {
  killed_.erase(std::remove_if(killed_.begin(), killed_.end(),
                               [](pid_t pid) {
                                 int status = 0;
                                 pid_t r = waitpid(pid, &status, WNOHANG);
                                 return r == pid || (r < 0 && errno == ECHILD);
                               }),
                killed_.end());
}

}  // namespace capbroker

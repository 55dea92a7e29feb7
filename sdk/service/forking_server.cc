#include "sdk/service/forking_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/child_gate.h"
#include "sdk/service/process_controls.h"
#include "sdk/service/fd_room.h"
#include "sdk/service/try_accept.h"
#include "sdk/wire/datagram.h"

namespace capbroker {
namespace {

// Events taken per epoll_wait; more simply wait for the next turn.
constexpr int kEventsPerTurn = 64;
// How often killed_ is looked at while it is not empty: those children
// have no pidfd to wake the loop.
constexpr int kKilledPollMs = 10;
// How long destruction waits for the workers it killed.
constexpr int64_t kStopWaitMs = 1000;
// A worker's exit code when it closed its connection for what its client
// sent or for a reply it could not send (ConnectionLoop::client_fault), one
// per kind, and what the main process logs for it, within its budget, where
// the worker's own line would have one of its own: "<worker> closed the
// connection <why>: <said>". 1 is the worker's own failure.
struct FaultExit {
  ClientFault kind;
  int code;
  const char* why;
  const char* said;
};
constexpr char kWhatItsClientSent[] = "for what its client sent";
constexpr FaultExit kFaultExits[] = {
    {ClientFault::kNotAMessage, 3, kWhatItsClientSent,
     "a datagram that is not a well-framed message"},
    {ClientFault::kFds, 4, kWhatItsClientSent,
     "a request with fds this service takes none of, or more than it takes"},
    {ClientFault::kReceive, 5, kWhatItsClientSent,
     "a datagram that could not be received whole (larger than a message may be, or its fds "
     "cut short: more than a message may carry, or the worker at its open-file limit), or an "
     "error receiving it"},
    {ClientFault::kHandler, 6, kWhatItsClientSent, "a request its handler could not read"},
    {ClientFault::kRefusesReplyFds, 7, kWhatItsClientSent,
     "a socket that refuses fds (SO_PASSRIGHTS off), where the reply to its request carries "
     "some"},
    {ClientFault::kReplyNotSent, 8, "as its reply could not be sent",
     "one too large or with more fds than a datagram carries (the service's bug), or one the "
     "kernel refused (ETOOMANYREFS: the fds in flight from the service's uid, in replies its "
     "clients do not read, over its open-file limit)"},
};
// How long the main process waits for a closer it killed to exit. A close
// that SIGKILL ends (a linger wait) ends at once; one it does not end keeps
// the closer past this, and it counts against Options::max_closers.
constexpr int kCloserExitWaitMs = 100;
// The send buffer of the main process's end of a closer's socket, which
// the connections waiting in the closer's queue count against (the kernel
// doubles the value, and a datagram with one fd takes about 768 bytes of
// it): about 20 wait before the socket is full and the closer deemed stuck.
// The kernel's default would let some 270 wait.
constexpr int kCloserSendBufferBytes = 8192;
// How often the parked connections are offered to a closer again while
// none runs to take them and another may be started (fork failed): a
// closer's exit need not come to wake the loop.
constexpr int kParkedRetryMs = 100;

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

// The exit of the child behind `pidfd`, which is reaped; std::nullopt if it
// has not exited (or waitid was interrupted: the pidfd stays readable). An
// error if waitid fails (ECHILD: someone else reaped it): gone either way.
absl::StatusOr<std::optional<siginfo_t>> WaitExit(int pidfd) {
  siginfo_t info{};
  if (waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) != 0) {
    if (errno == EINTR) return std::nullopt;
    return ErrnoStatus(errno, "waitid");
  }
  if (info.si_pid == 0) return std::nullopt;
  return info;
}

}  // namespace

ForkingServer::ForkingServer(Client& broker, RequestHandler& handler, Options options)
    : broker_(broker),
      handler_(handler),
      options_(std::move(options)),
      max_workers_(options_.max_workers),
      log_(options_.max_log_lines_per_second) {}

ForkingServer::~ForkingServer() {
  if (!started_) return;
  stopping_ = true;
  // Only the children's exits matter now.
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, broker_.fd(), nullptr);
  const int64_t deadline = MonotonicMs() + kStopWaitMs;
  // The workers first: serving is over, and nothing that may block comes
  // before they are told (the close of a parked connection can block past
  // SIGKILL: see the header).
  for (const auto& [pidfd, worker] : workers_) {
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  }
  ReapUntil(deadline, /*closers=*/false);
  // The parked connections go to a closer if one takes them (the workers'
  // process slots are free by now).
  HandParked();
  // The connections waiting in a closer's socket go when it dies, and an
  // exiting process does not wait out a linger.
  closer_socket_.reset();
  for (const auto& [pidfd, closer] : closers_) {
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  }
  ReapUntil(deadline, /*closers=*/true);
  // Last, those no closer took close here, which may delay only the exit.
  parked_.clear();
}

void ForkingServer::ReapUntil(int64_t deadline, bool closers) {
  while (!workers_.empty() || !killed_.empty() || (closers && !closers_.empty())) {
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) return;
    epoll_event events[kEventsPerTurn];
    int timeout = static_cast<int>(killed_.empty() ? left : std::min<int64_t>(left, kKilledPollMs));
    int n = epoll_wait(epoll_.get(), events, kEventsPerTurn, timeout);
    if (n < 0 && errno != EINTR) return;
    for (int i = 0; i < n; ++i) Reap(events[i].data.fd);
    ReapKilled();
  }
}

absl::Status ForkingServer::Init() {
  CB_ASSIGN_OR_RETURN(epoll_, TakeFd(epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
  // A worker takes one fd here (its pidfd); the closers one each and, for
  // the current one, its socket (and its other end while it starts).
  // Beyond what the fd table holds, the broker's next `incoming` would
  // arrive without its fd (see fd_room.h) and end the service. The
  // connections the Client queued hold an fd each already, which their
  // workers' pidfds take over: not fds used for good.
  CB_ASSIGN_OR_RETURN(
      size_t room,
      FdRoomFor(max_workers_,
                kFdReserve + kMaxParked +
                    (options_.max_closers == 0 ? 0 : options_.max_closers + 2),
                broker_.queued_incoming()));
  if (room < max_workers_) {
    log_.Line(FdRoomLine(room, max_workers_, "workers (a connection each)"));
    max_workers_ = room;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = broker_.fd();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, broker_.fd(), &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD, broker fd=", broker_.fd(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ForkingServer::CheckChildrenCanSetUp() { return DieWithParent(); }

absl::Status ForkingServer::Run() {
  for (;;) {
    CB_ASSIGN_OR_RETURN(bool serving, Turn(-1));
    if (!serving) return absl::OkStatus();
  }
}

absl::StatusOr<bool> ForkingServer::Turn(int timeout_ms) {
  // What epoll cannot show (see AcceptWithoutReadiness) is taken now, and
  // then no wait after that work. The first turn also says what the Client
  // dropped before.
  bool take_queued = AcceptWithoutReadiness(broker_);
  if (!started_) {
    CB_RETURN_IF_ERROR(Init());
    started_ = true;
    take_queued = true;
  }
  // A closer may be free by now (one stuck has exited).
  HandParked();
  const bool park_full = parked_.size() >= kMaxParked;
  if (park_full != broker_paused_) {
    CB_RETURN_IF_ERROR(WatchBroker(!park_full));
    if (park_full) {
      log_.Line(absl::StrCat(
          "takes no new connections while ", parked_.size(),
          " refused connections wait to be closed: no closer takes them (a closer is stuck "
          "in a close that SIGKILL does not end, or none can be started); clients are told "
          "the service is busy"));
    }
    take_queued = take_queued || !park_full;
  }
  if (take_queued && !broker_paused_) {
    CB_ASSIGN_OR_RETURN(bool open, AcceptAll());
    if (!open) return false;
    timeout_ms = 0;
  }
  if (!killed_.empty() && (timeout_ms < 0 || timeout_ms > kKilledPollMs)) {
    timeout_ms = kKilledPollMs;
  }
  // Parked connections no closer took, with room for another closer: one
  // could not be started (fork failed: RLIMIT_NPROC, ENOMEM), and no
  // closer's exit need come to wake the loop (killed closers may live on).
  if (!parked_.empty() && !closer_socket_.valid() && closers_.size() < options_.max_closers &&
      (timeout_ms < 0 || timeout_ms > kParkedRetryMs)) {
    timeout_ms = kParkedRetryMs;
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
      // Paused, the broker fd is watched for its hang-up alone (an fd in
      // an epoll set always reports that): the broker is gone.
      if (broker_paused_) return false;
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
  // With the park full, no connection is taken: one more refused would
  // have no fd reserved to wait in (the next Turn stops watching for them;
  // epoll may still report the broker fd in this one).
  while (parked_.size() < kMaxParked) {
    absl::StatusOr<std::optional<IncomingConnection>> next = TryAccept(broker_);
    // What the Client dropped meanwhile (fd_room.h), said once.
    if (auto dropped = DroppedIncomingLine(broker_.dropped_incoming(), &dropped_seen_)) {
      log_.Line(*dropped);
    }
    if (!next.ok()) {
      if (next.status().code() == absl::StatusCode::kUnavailable) return false;
      return next.status();
    }
    if (!next->has_value()) return true;
    Start(std::move(**next));
  }
  return true;
}

absl::Status ForkingServer::WatchBroker(bool incoming) {
  epoll_event event{};
  event.events = incoming ? static_cast<uint32_t>(EPOLLIN) : 0u;
  event.data.fd = broker_.fd();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, broker_.fd(), &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(MOD, broker fd=", broker_.fd(), ")"));
  }
  broker_paused_ = !incoming;
  return absl::OkStatus();
}

size_t ForkingServer::parked_count(uint32_t uid) const {
  return static_cast<size_t>(std::count_if(parked_.begin(), parked_.end(),
                                           [uid](const Parked& p) { return p.peer.uid == uid; }));
}

size_t ForkingServer::worker_count(uint32_t uid) const {
  auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second;
}

absl::Status ForkingServer::OverLimit(const Peer& peer) const {
  // Its refused connections wait because no closer takes them: most likely
  // it queued in them files whose close does not end (a closer is stuck on
  // one). Refused, its new ones join them, within kMaxParked.
  if (const size_t waiting = parked_count(peer.uid); waiting > 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        waiting, " refused connections of uid ", peer.uid,
        " wait to be closed (the service's closers are stuck): its new connections are "
        "refused until they are closed; try again later"));
  }
  // Killed children not reaped yet are processes still: they count.
  if (workers_.size() + killed_.size() >= max_workers_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the service serves at most ", max_workers_, " connections at once"));
  }
  if (worker_count(peer.uid) >= options_.max_workers_per_uid) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the service serves at most ", options_.max_workers_per_uid,
                     " connections of uid ", peer.uid, " at once"));
  }
  return absl::OkStatus();
}

void ForkingServer::Start(IncomingConnection incoming) {
  // A turn may take several connections, and a refusal takes time (it may
  // start a closer): a worker may have exited since the turn began. Until
  // it is reaped it holds its slot, and its process counts against
  // RLIMIT_NPROC and pids.max. A process so freed may take a closer for
  // the parked connections, which go first: while they wait, their uid's
  // new connections are refused.
  ReapExited();
  HandParked();
  Peer peer = PeerOf(incoming);
  if (absl::Status over = OverLimit(peer); !over.ok()) {
    Refuse(std::move(incoming.fd), peer, over);
    return;
  }
  auto unstarted = [&](const absl::Status& why) {
    Refuse(std::move(incoming.fd), peer,
           absl::ResourceExhaustedError(absl::StrCat(
               "no worker process could be started for the connection: ", why.message())));
  };
  // The gate (child_gate.h): the worker sheds what it inherited before
  // this process goes on, and reads nothing of its client's until this
  // process has closed its copy of the connection.
  absl::StatusOr<ChildGate> gate = ChildGate::Create();
  if (!gate.ok()) {
    unstarted(gate.status());
    return;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    unstarted(ErrnoStatus(errno, "fork"));
    return;
  }
  if (pid == 0) ServeInWorker(std::move(incoming), parent, *gate);
  // First, before this process closes, hands on or forks anything: the
  // worker's copies of this process's fds are gone, so that none of its
  // closes is the last of a connection another client queued fds in.
  if (absl::Status set_up = AwaitChildSetUp(*gate, pid); !set_up.ok()) {
    unstarted(set_up);
    return;
  }
  // Then this process's copy of the connection, while the worker holds
  // another and waits at the gate: a worker that read its client's first
  // datagram could have exited (a bad one), and this close been the last,
  // which drops what the client queued behind it (see the header).
  incoming.fd.reset();
  gate->Open();
  absl::StatusOr<UniqueFd> pidfd = Watch(pid);
  if (!pidfd.ok()) {
    // It may have begun to serve, so the client gets no refusal, only the
    // end of the connection.
    log_.Line(absl::StrCat("killed the worker (pid ", pid, ") of ", DescribePeer(peer),
                           ": cannot watch it: ", pidfd.status().message()));
    return;
  }
  ++per_uid_[peer.uid];
  const int key = pidfd->get();
  workers_.emplace(key, Worker{std::move(*pidfd), pid, std::move(peer)});
}

absl::Status ForkingServer::AwaitChildSetUp(ChildGate& gate, pid_t pid) {
  CB_RETURN_IF_ERROR(gate.AwaitChildSetUp(pid));
  if (options_.child_set_up_for_test) options_.child_set_up_for_test(pid);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> ForkingServer::Watch(pid_t pid) {
  // The child cannot be reaped by anyone else before we wait for it, so
  // `pid` names it until then: pidfd_open names the right process.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  absl::Status watched = pidfd.valid()
                             ? absl::OkStatus()
                             : ErrnoStatus(errno, absl::StrCat("pidfd_open(", pid, ")"));
  if (watched.ok()) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = pidfd.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, pidfd.get(), &event) != 0) {
      watched = ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD, pidfd of ", pid, ")"));
    }
  }
  if (watched.ok()) return pidfd;
  // ENOMEM, EMFILE: a child nothing would reap or count goes.
  kill(pid, SIGKILL);
  killed_.push_back(pid);
  return watched;
}

void ForkingServer::ServeInWorker(IncomingConnection incoming, pid_t parent, ChildGate& gate) {
  const std::string who = DescribePeer(PeerOf(incoming));
  std::vector<int> keep = options_.worker_fds;
  keep.push_back(incoming.fd.get());
  // First, before anything that could end this process: the fds it
  // inherited go, then it waits at the gate, even if its setup failed (its
  // exit must come after the main process's close of the connection).
  absl::Status status = gate.SetUpChild(parent, std::move(keep));
  absl::Status opened = gate.AwaitOpen();
  if (status.ok()) status = opened;
  ClientFault client_fault = ClientFault::kNone;
  if (status.ok()) {
    ConnectionLoop loop(std::move(incoming), handler_, options_.worker_loop);
    status = loop.Run();
    client_fault = loop.client_fault_kind();
  }
  if (!status.ok()) {
    std::fprintf(stderr, "worker of %s: %s\n", who.c_str(), status.ToString().c_str());
  }
  // _exit, not exit or a return: the objects of the main process this copy
  // holds must not be destroyed here (their fds are closed, their numbers
  // may have been reused), nor its atexit handlers run or its stdio
  // buffers flushed a second time.
  if (!status.ok()) _exit(1);
  for (const FaultExit& fault : kFaultExits) {
    if (fault.kind == client_fault) _exit(fault.code);
  }
  _exit(0);
}

void ForkingServer::Refuse(UniqueFd connection, const Peer& peer, const absl::Status& reason) {
  log_.Line(absl::StrCat("refused a connection of ", DescribePeer(peer), ": ", reason.message()));
  absl::Status sent = SendRefusal(connection.get(), handler_, reason);
  // A client gone already is no news; anything else is the service's bug.
  if (!sent.ok() && sent.code() != absl::StatusCode::kUnavailable) {
    log_.Line(absl::StrCat("cannot send the refusal: ", sent.ToString()));
  }
  parked_.push_back(Parked{std::move(connection), peer});
  HandParked();
  // In order: if any is left, this one is.
  if (!parked_.empty()) {
    log_.Line(absl::StrCat("a refused connection of ", DescribePeer(peer),
                           " waits in the main process (", parked_.size(), " of at most ",
                           kMaxParked, "): no closer takes it now"));
  }
}

void ForkingServer::HandParked() {
  while (!parked_.empty()) {
    absl::Status handed = HandToCloser(parked_.front().connection);
    if (!handed.ok()) return;
    parked_.pop_front();
  }
}

absl::Status ForkingServer::HandToCloser(UniqueFd& connection) {
  absl::Status failed;
  // A second closer if the first takes no more; not a third: a client whose
  // connections stall every closer would otherwise have us start closers
  // without end.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!closer_socket_.valid()) {
      failed = StartCloser();
      if (!failed.ok()) return failed;
    }
    // One word: a datagram as ReceiveDatagram takes it.
    uint64_t word = 0;
    iovec iov{&word, sizeof(word)};
    const int fd = connection.get();
    absl::StatusOr<bool> sent = wire::SendDatagram(closer_socket_.get(), &iov, 1, {&fd, 1});
    if (sent.ok() && *sent) {
      // Ours goes first. Had the closer received and closed its copy
      // already, this close would be the last: the closer closes what a
      // datagram carries only when the next one comes, which we send after
      // this close. Sent now, so that the connection need not wait for the
      // next refusal; when the socket is full, it waits for the closer's
      // end (the next hand-off finds the closer stuck).
      connection.reset();
      (void)wire::SendDatagram(closer_socket_.get(), &iov, 1, {});
      return absl::OkStatus();
    }
    failed = sent.ok() ? absl::ResourceExhaustedError(
                             "its socket is full: it is stuck closing a connection")
                       : sent.status();
    KillCloser(failed.message());
  }
  return failed;
}

absl::Status ForkingServer::StartCloser() {
  if (closers_.size() >= options_.max_closers) {
    return absl::ResourceExhaustedError(absl::StrCat(
        closers_.size(), " closers are alive, of at most ", options_.max_closers,
        " (a killed one lives on while a close that SIGKILL does not end holds it)"));
  }
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
    return ErrnoStatus(errno, "socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  UniqueFd ours(ends[0]);
  UniqueFd theirs(ends[1]);
  CB_RETURN_IF_ERROR(SetNonBlocking(ours.get(), true));
  if (setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &kCloserSendBufferBytes,
                 sizeof(kCloserSendBufferBytes)) != 0) {
    return ErrnoStatus(errno, "setsockopt(SO_SNDBUF)");
  }
  CB_ASSIGN_OR_RETURN(ChildGate gate, ChildGate::Create());
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return ErrnoStatus(errno, "fork");
  if (pid == 0) CloseInCloser(theirs.get(), parent, gate);
  theirs.reset();
  // Before any connection is handed to it, or closed here: the closer's
  // copies of this process's fds are gone (child_gate.h).
  CB_RETURN_IF_ERROR(AwaitChildSetUp(gate, pid));
  gate.Open();
  absl::StatusOr<UniqueFd> pidfd = Watch(pid);
  if (!pidfd.ok()) return pidfd.status();
  closer_ = pidfd->get();
  closers_.emplace(closer_, Closer{std::move(*pidfd), pid});
  closer_socket_ = std::move(ours);
  return absl::OkStatus();
}

void ForkingServer::KillCloser(absl::string_view why) {
  const int pidfd = closer_;
  auto it = closers_.find(pidfd);
  if (it == closers_.end()) return;
  log_.Line(absl::StrCat("killed the closer of refused connections (pid ", it->second.pid,
                         "): ", why));
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  closer_socket_.reset();
  closer_ = -1;
  pollfd exited{pidfd, POLLIN, 0};
  if (RetryEintr([&] { return poll(&exited, 1, kCloserExitWaitMs); }) == 1) Reap(pidfd);
}

void ForkingServer::CloseInCloser(int socket, pid_t parent, ChildGate& gate) {
  absl::Status status = gate.SetUpChild(parent, {socket});
  absl::Status opened = gate.AwaitOpen();
  if (status.ok()) status = opened;
  wire::ReceiveBuffer buffer;
  // What the last datagram carried. The main process sends a datagram only
  // after closing its copies of what the earlier ones carried, so the next
  // datagram says that closing them here is the last close.
  std::vector<UniqueFd> held;
  while (status.ok()) {
    absl::StatusOr<std::optional<wire::Datagram>> datagram =
        wire::ReceiveDatagram(socket, buffer);
    if (!datagram.ok()) {
      status = datagram.status();
      break;
    }
    held.clear();
    if (datagram->has_value()) held = std::move((*datagram)->fds);
  }
  // End of stream: the main process is done with us. What is held closes
  // as we exit.
  if (status.code() == absl::StatusCode::kUnavailable) _exit(0);
  std::fprintf(stderr, "closer of refused connections: %s\n", status.ToString().c_str());
  _exit(1);
}

void ForkingServer::ReapExited() {
  epoll_event events[kEventsPerTurn];
  int n = epoll_wait(epoll_.get(), events, kEventsPerTurn, 0);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd != broker_.fd()) Reap(events[i].data.fd);
  }
}

void ForkingServer::Reap(int pidfd) {
  auto worker = workers_.find(pidfd);
  auto closer = closers_.find(pidfd);
  if (worker == workers_.end() && closer == closers_.end()) return;
  const bool is_worker = worker != workers_.end();
  absl::StatusOr<std::optional<siginfo_t>> exit = WaitExit(pidfd);
  if (exit.ok() && !exit->has_value()) return;  // not exited after all
  const std::string who =
      is_worker ? absl::StrCat("the worker (pid ", worker->second.pid, ") of ",
                               DescribePeer(worker->second.peer))
                : absl::StrCat("the closer of refused connections (pid ", closer->second.pid, ")");
  // SIGKILL is ours when stopping, and for a closer (logged when sent).
  const bool killed_by_us = exit.ok() && (*exit)->si_code == CLD_KILLED &&
                            (*exit)->si_status == SIGKILL && (stopping_ || !is_worker);
  const bool exited_with = exit.ok() && (*exit)->si_code == CLD_EXITED;
  const FaultExit* fault = nullptr;
  for (const FaultExit& f : kFaultExits) {
    if (is_worker && exited_with && (*exit)->si_status == f.code) fault = &f;
  }
  if (!exit.ok()) {
    log_.Line(absl::StrCat(who, ": ", exit.status().message()));
  } else if (fault != nullptr) {
    log_.Line(absl::StrCat(who, " closed the connection ", fault->why, ": ", fault->said));
  } else if (!(exited_with && (*exit)->si_status == 0) && !killed_by_us) {
    log_.Line(absl::StrCat(who, " ", DescribeExit(**exit)));
  }
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, pidfd, nullptr);
  if (is_worker) {
    auto uid = per_uid_.find(worker->second.peer.uid);
    if (uid != per_uid_.end() && --uid->second == 0) per_uid_.erase(uid);
    workers_.erase(worker);  // closes the pidfd
    return;
  }
  if (pidfd == closer_) {
    closer_socket_.reset();
    closer_ = -1;
  }
  closers_.erase(closer);
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

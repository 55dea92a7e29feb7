#include "broker/server/broker_loop.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "broker/peer/peer_identity.h"
#include "broker/server/dispatch.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker::server {
namespace {

constexpr uint64_t kListenerTag = ~uint64_t{0};
constexpr uint64_t kControlTag = ~uint64_t{0} - 1;
// Tags of watched fds: the fd with this bit; connections are tagged with
// their bare fd.
constexpr uint64_t kWatchBit = uint64_t{1} << 40;
constexpr int kMaxEvents = 64;
// Requests served per connection per readiness event. One: epoll is
// level-triggered, so a connection with more waiting is reported again on
// the next turn, all clients take turns, and no recvmsg is spent finding a
// socket empty.
constexpr int kDatagramsPerWakeup = 1;
constexpr size_t kScratchWords = 1024;

// The reserve fd's file (see BrokerLoop::Usable).
constexpr char kReservePath[] = "/dev/null";
UniqueFd OpenReserve() { return UniqueFd(open(kReservePath, O_RDONLY | O_CLOEXEC)); }

// Connections accepted per wakeup of the listener.
constexpr int kAcceptsPerWakeup = 16;

// How often a listener paused for want of fds, or after another accept
// error (see Accept), tries again when nothing else wakes the loop.
constexpr int kPausedListenerRetryMs = 100;

// Lines a client can provoke, per second; the rest are counted.
constexpr int kPeerLogLinesPerSecond = 20;

// How often a refusal at max_connections may count who holds the most
// connections (see BrokerLoop::top_holder_).
constexpr absl::Duration kTopHolderRecountInterval = absl::Seconds(1);

// How a connection ended, as the not-delivered lines of its waiting
// connects say it (Connection::closing_for).
constexpr absl::string_view kClientHungUp = "the client hung up";
constexpr absl::string_view kQueueFull =
    "the broker closed the client's connection: it did not read its replies, and its queue "
    "was full";
constexpr absl::string_view kAllQueuesFull =
    "the broker closed the client's connection: it did not read its replies, and all "
    "connections' queues together were full";
constexpr absl::string_view kSentFds =
    "the broker closed the client's connection: it sent fds";
constexpr absl::string_view kSocketFailed =
    "the broker closed the client's connection: its socket failed";
constexpr absl::string_view kEpollFailed =
    "the broker closed the client's connection: epoll_ctl failed";
constexpr absl::string_view kInternalError =
    "the broker closed the client's connection after an internal error";
constexpr absl::string_view kServiceStopped =
    "the client, a hosted service, stopped or was stopped";
constexpr absl::string_view kBrokerStopped =
    "the broker stopped before the client's socket took the reply";

// The send buffer of a client's connection (SO_SNDBUF as the kernel counts
// it: setsockopt is given half, which the kernel doubles). Each reply the
// broker sends is charged to it, at its skb's true size (768 bytes for the
// smallest reply, 1280 from 193 bytes on; measured on Linux 6.18), until
// the client reads it; sendmsg says EAGAIN once the charges reach the
// buffer, and the reply waits in the broker's queue, under its limits. So
// at most 32 replies, and the fds of at most 32 grants (open files the
// broker made), are in flight to one connection. The default buffer
// (net.core.wmem_default, 208 KiB) let 278 sit in a socket that is never
// read, and they stay with the client after the broker disconnects it: the
// sender is root, exempt from the kernel's limit on fds in flight. Clients
// with one request outstanding (and the benchmarks) never come near it.
constexpr int kClientSendBufferBytes = 24 * 1024;

// The send buffer of a service's connection. Every connect that waited
// for a service to start (up to service::kMaxPendingConnects, 1024) is
// delivered at once when it is ready: a datagram of at most 1 KiB (names
// are at most 64 bytes) and an fd each, which the kernel charges at its
// skb's true size. Ends that do not fit are refused ("busy"), never queued
// in the broker (see the class comment). Only a root broker can set more
// than net.core.wmem_max (SO_SNDBUFFORCE); a user's broker gets twice that
// (416 KiB by default), room for a few hundred.
constexpr int kServiceSendBufferBytes = 4 * 1024 * 1024;

// Less than the kernel charges any datagram in flight (SIOCOUTQ on an
// AF_UNIX socket: sk_wmem_alloc, each datagram sent and not yet read or
// dropped at its skb's true size, struct sk_buff and skb_shared_info
// included: over 500 bytes even when empty). Not 0: the peer's read (or
// its close, which drops what its socket holds) frees the last one in
// sock_wfree, which keeps one unit of it while it wakes the sender
// (net/core/sock.c), so the loop, woken by that, can read 1.
constexpr int kNothingInFlightBelow = 256;

// What sendmsg(2) on an AF_UNIX datagram socket keeps of the send buffer:
// a datagram longer than the buffer less this fails with EMSGSIZE.
constexpr size_t kSendBufferReserve = 32;

}  // namespace

BrokerLoop::BrokerLoop(RequestHandler& handler, audit::AuditLog& audit,
                       Stats& stats, Limits limits, peer::UnmappedIds unmapped_ids)
    : peer_log_(kPeerLogLinesPerSecond),
      handler_(handler),
      audit_(audit),
      stats_(stats),
      limits_(limits),
      unmapped_ids_(unmapped_ids),
      own_euid_(geteuid()),
      scratch_(kj::heapArray<capnp::word>(kScratchWords)) {
  std::fill(scratch_.begin(), scratch_.end(), capnp::word());
  epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) {
    unusable_ = ErrnoStatus(errno, "epoll_create1");
    return;
  }
  reserve_fd_ = OpenReserve();
  if (!reserve_fd_) {
    const absl::Status opened = ErrnoStatus(errno, absl::StrCat("open(", kReservePath, ")"));
    unusable_ = absl::FailedPreconditionError(absl::StrCat(
        "the broker cannot open its reserve fd, ", opened.message(),
        ": it holds ", kReservePath, " open to free when it runs out of fds, so as to "
        "refuse a connection with a reason and go on accepting; without it, it would stop "
        "accepting connections at the first EMFILE. Let the broker read ", kReservePath,
        " (systemd's InaccessiblePaths= or a /dev without it keep it out)"));
  }
}

BrokerLoop::~BrokerLoop() {
  // Left open for the process's exit to close: not closed here, where
  // dropping what they hold could wait (see Discard). An exiting process
  // does not linger on close, and releases nothing through close() itself.
  for (UniqueFd& fd : set_aside_) (void)fd.release();
}

namespace {

// Whether `audit` may still be written: kUnavailable, saying why and what
// to do, once it never can (AuditLog::reader_gone).
absl::Status StillWritable(const audit::AuditLog& audit) {
  if (!audit.reader_gone()) return absl::OkStatus();
  return absl::UnavailableError(
      "the audit log (standard error) has no reader any more (EPIPE) and cannot be "
      "reopened, so no grant could ever be on record; start the broker again with a log "
      "that can be written (--audit-log FILE, or a standard error that is read)");
}

}  // namespace

absl::Status BrokerLoop::Serve(int listener, int control_fd,
                               const std::function<bool()>& on_control) {
  CB_RETURN_IF_ERROR(Usable());
  CB_RETURN_IF_ERROR(WatchListener(listener, true));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kControlTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, control_fd, &ev) != 0) {
    return ErrnoStatus(errno, "epoll_ctl(ADD control fd)");
  }
  epoll_event events[kMaxEvents];
  for (;;) {
    // Missing when a connection refused at EMFILE was set aside (Discard)
    // and kept the number it freed: taken back as soon as an fd is free, so
    // that a full table later still refuses with a reason instead of
    // leaving the listener readable with nothing able to take from it.
    if (!reserve_fd_.valid()) reserve_fd_ = OpenReserve();
    if (listener_paused_ && reserve_fd_.valid() &&
        std::chrono::steady_clock::now() >= listener_resume_at_) {
      absl::Status resumed = WatchListener(listener, true);
      if (!resumed.ok()) PeerLog(resumed.message());  // tried again next turn
    }
    SendPending();
    Reap();
    // Every answer of the turn is queued now: a line lost from here on
    // belongs to an answer of a later turn.
    lost_this_turn_.clear();
    // Once the turn's replies are sent (its grants withheld): from here on
    // nothing could be granted with a record, ever.
    CB_RETURN_IF_ERROR(StillWritable(audit_));
    // While the listener is paused, an fd the system frees (ENFILE), or the
    // end of an accept error, shows in no event of ours: tried again after
    // a while.
    const int timeout_ms = listener_paused_ ? kPausedListenerRetryMs : -1;
    int n = RetryEintr(
        [&] { return epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms); });
    if (n < 0) return ErrnoStatus(errno, "epoll_wait");
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kControlTag) {
        if (on_control()) {
          // The answers of this turn are queued, their grants' lines
          // recorded: they go now (the lines first), or a client whose
          // request came with the stop would get no reply, and the log
          // would hold a grant never delivered.
          SendPending();
          FlushAudit();
          return StillWritable(audit_);
        }
        continue;
      }
      if (tag == kListenerTag) {
        Accept(listener);
        continue;
      }
      if (tag & kWatchBit) {
        auto watch = watches_.find(static_cast<int>(tag & ~kWatchBit));
        if (watch == watches_.end()) continue;
        std::function<void()> callback = watch->second;  // it may unwatch itself
        callback();
        continue;
      }
      int fd = static_cast<int>(tag);
      if (fd >= static_cast<int>(connections_.size()) || !connections_[fd]) continue;
      Connection& connection = *connections_[fd];
      if (connection.disconnected) {
        // Its peer read or dropped some of what was in flight (see
        // Disconnect): the slot goes once all of it is.
        if (!HoldsRepliesInFlight(connection)) Release(connection);
        continue;
      }
      if (connection.close_when_flushed && (events[i].events & (EPOLLHUP | EPOLLERR))) {
        Close(connection);  // the peer is gone: nothing left to deliver
        continue;
      }
      if (events[i].events & EPOLLOUT) {
        SendQueued(connection);
        if (connection.closed) continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(connection);
    }
  }
}

absl::Status BrokerLoop::Usable() const { return unusable_; }

void BrokerLoop::SendWhatIsQueued() {
  FlushAudit();  // before the first reply goes (SendQueued does it too)
  for (const std::unique_ptr<Connection>& connection : connections_) {
    // SendQueued may close it, which moves it out of connections_.
    if (connection && !connection->closed && !connection->queue.empty()) {
      SendQueued(*connection);
    }
  }
  pending_sends_.clear();
  // What a socket did not take now never goes: its grants' lines need the
  // line that says so, which the broker's last flush writes.
  for (const std::unique_ptr<Connection>& connection : connections_) {
    if (!connection || connection->closed) continue;
    for (const QueuedReply& q : connection->queue) {
      NotDelivered(*connection, q.words, q.principal, q.open, kBrokerStopped);
    }
  }
}

namespace {

// Whether an accept4 error outlasts the call: anything but nothing waiting
// (EAGAIN), a call cut short (EINTR, ECONNABORTED) and the want of an fd
// (EMFILE, ENFILE: see Accept). ENOMEM, ENOBUFS, a security module's EPERM
// leave the listener readable while they last.
bool AcceptErrorLasts(int accept_errno) {
  switch (accept_errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
    case ECONNABORTED:
    case EMFILE:
    case ENFILE:
      return false;
    default:
      return true;
  }
}

}  // namespace

void BrokerLoop::Accept(int listener) {
  // A bounded number per wakeup: clients that keep connecting must not keep
  // the loop from serving the connections it has (level-triggered epoll
  // reports the listener again while connections wait).
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      Admit(UniqueFd(fd));
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE) {
      // accept4 fails for lack of an fd before it looks for a connection:
      // free the reserve to take the waiting one and hang up on it, so the
      // listener stops being readable. Nothing waiting: nothing to do.
      // The refused connection is closed before the reserve is opened
      // again: it holds the only free number, and with the table full the
      // reserve would otherwise be lost for good.
      reserve_fd_.reset();
      const int refused_fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      const int refused_errno = refused_fd >= 0 ? 0 : errno;
      UniqueFd refused(refused_fd);
      bool took = refused.valid();
      if (took) {
        PeerLog("out of fds: refusing a connection");
        Refuse(refused.get(), absl::ResourceExhaustedError(
                                  "the broker refused the connection: it is out of fds"));
      }
      bool fds_may_wait = FdsMayWait(refused.get());
      Discard(std::move(refused), fds_may_wait);
      reserve_fd_ = OpenReserve();
      if (took) continue;
      if (AcceptErrorLasts(refused_errno)) {
        PauseListener(listener, refused_errno);
        return;
      }
      if (!reserve_fd_.valid()) {
        // The table is full and nothing is in reserve (a connection set
        // aside keeps its number): the listener stays readable with nothing
        // able to take from it, and watched, it would wake every turn. It
        // is watched again once the reserve is back (Serve).
        PeerLog("out of fds, none in reserve: not accepting connections until one is free");
        absl::Status paused = WatchListener(listener, false);
        if (!paused.ok()) PeerLog(paused.message());
      }
      return;
    }
    if (!AcceptErrorLasts(errno)) return;  // nothing waiting
    PauseListener(listener, errno);
    return;
  }
}

void BrokerLoop::PauseListener(int listener, int accept_errno) {
  listener_resume_at_ = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(kPausedListenerRetryMs);
  PeerLog(absl::StrCat("accept4: ", std::strerror(accept_errno),
                       "; not accepting connections for ", kPausedListenerRetryMs, " ms"));
  absl::Status paused = WatchListener(listener, false);
  if (!paused.ok()) PeerLog(paused.message());
}

absl::Status BrokerLoop::WatchListener(int listener, bool watch) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerTag;
  if (epoll_ctl(epoll_.get(), watch ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listener, &ev) != 0) {
    return ErrnoStatus(errno, watch ? "epoll_ctl(ADD listener)" : "epoll_ctl(DEL listener)");
  }
  listener_paused_ = !watch;
  return absl::OkStatus();
}

bool BrokerLoop::FdsMayWait(int fd) {
  if (fd < 0) return false;
  // A connection takes its listener's credential options (SO_PASSCRED,
  // SO_PASSSEC, SO_PASSPIDFD) when the client connects, so one made to a
  // socket from systemd before the broker turned them off
  // (Listener::FromSystemd; the unit's PassCredentials=) still has them,
  // whether or not it takes fds (AcceptFileDescriptors=no), and every
  // datagram would come with a control message and read as one carrying
  // fds. Turned off on every connection: three setsockopts, nothing
  // allocated, and the loop need not know where its listener came from.
  absl::Status stopped = wire::StopCredentialMessages(fd);
  if (!stopped.ok()) PeerLog(stopped.message());
  absl::StatusOr<bool> takes = wire::TakesFds(fd);
  // Not known (a kernel without SO_PASSRIGHTS), or refused since connect.
  if (!takes.ok() || !*takes) return false;
  // Nothing more can come with fds; what came before is dealt with in turn.
  absl::Status refused = wire::RefuseFds(fd);
  if (!refused.ok()) PeerLog(refused.message());
  return true;
}

void BrokerLoop::Discard(UniqueFd fd, bool fds_may_wait) {
  if (!fd.valid() || !fds_may_wait) return;  // closes it
  absl::StatusOr<wire::Waiting> waiting = wire::PeekDatagram(fd.get());
  if (waiting.ok() && (*waiting == wire::Waiting::kNothing ||
                       *waiting == wire::Waiting::kEndOfStream)) {
    return;  // nothing to drop
  }
  // Out of the epoll set, if it was in it: it stays open.
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
  PeerLog(absl::StrCat("keeping a connection open, unread, for good: it was made before the "
                       "broker refused fds (", set_aside_.size() + 1,
                       " so far), and closing it could drop a client's fd here"));
  set_aside_.push_back(std::move(fd));
}

void BrokerLoop::Admit(UniqueFd fd) {
  // Set aside rather than closed if it is not served (see Discard).
  bool fds_may_wait = FdsMayWait(fd.get());
  absl::Cleanup unserved = [&] { Discard(std::move(fd), fds_may_wait); };
  // The quotas go by uid, which SO_PEERCRED tells without an fd: they are
  // checked before the peer is verified (a pidfd, the open of its
  // executable), so that a refused connection costs nothing more, and one
  // over its quota near the fd limit is told the quota.
  absl::StatusOr<peer::Credentials> credentials = peer::PeerCredentials(fd.get());
  if (!credentials.ok()) {
    // The socket is not one to talk to.
    PeerLog(absl::StrCat("refusing a connection: ", credentials.status().message()));
    return;
  }
  const uint32_t uid = credentials->uid();
  // Before the quotas: a uid that stands for every unmapped user is no
  // uid to count connections by, nor one a principal should match.
  if (absl::Status mapped = peer::CheckIdsMapped(*credentials, unmapped_ids_); !mapped.ok()) {
    PeerLog(absl::StrCat("refusing uid ", uid, " gid ", credentials->gid(), ": ",
                         mapped.message()));
    Refuse(fd.get(), absl::Status(mapped.code(), absl::StrCat("the broker refused the "
                                                              "connection: ",
                                                              mapped.message())));
    return;
  }
  // The administrator gets in even when other uids hold every connection
  // (see kAdministratorReserve); within its per-uid quota all the same.
  const bool administrator = uid == 0 || uid == own_euid_;
  const size_t reserve = administrator ? kAdministratorReserve : 0;
  if (stats_.connections >= limits_.max_connections + reserve) {
    const std::string holders = Holders();
    PeerLog(absl::StrCat(
        "refusing uid ", uid, ": ", stats_.connections, " connections open, the most ",
        administrator ? absl::StrCat("--max-connections (", limits_.max_connections,
                                     ") and the administrator's reserve (", reserve, ") allow")
                      : absl::StrCat("--max-connections allows (", limits_.max_connections, ")"),
        ": ", holders,
        administrator ? ""
                      : absl::StrCat("; uid 0 and the broker's uid may open ",
                                     kAdministratorReserve, " beyond --max-connections")));
    // Who holds them is for the administrator (the line above): the
    // client is not told other users' uids, nor how many connections
    // each holds, any more than capctl status tells it.
    Refuse(fd.get(), absl::ResourceExhaustedError(absl::StrCat(
                         "the broker refused the connection: it serves at most ",
                         limits_.max_connections, " connections at once (--max-connections)",
                         administrator ? absl::StrCat(" and ", reserve,
                                                      " more for the administrator")
                                       : "",
                         ", and ", stats_.connections,
                         " are open; try again later, or ask the broker's administrator, "
                         "whose log says who holds them")));
    return;
  }
  // Counted once admitted: a refused uid leaves no entry behind, which
  // would count among the uids that hold connections (Holders).
  auto held = connections_per_uid_.find(uid);
  const UidConnections per_uid =
      held == connections_per_uid_.end() ? UidConnections{} : held->second;
  if (per_uid.held >= limits_.max_connections_per_uid) {
    const std::string disconnected =
        per_uid.disconnected == 0
            ? std::string()
            : absl::StrCat(", ", per_uid.disconnected,
                           " of them disconnected by the broker and still counted: each until "
                           "its client has read the replies already sent to it, or closed it");
    PeerLog(absl::StrCat("refusing uid ", uid, ": ", per_uid.held, " connections of this uid",
                         disconnected));
    Refuse(fd.get(), absl::ResourceExhaustedError(absl::StrCat(
                         "the broker refused the connection: uid ", uid, " has ", per_uid.held,
                         " connections open, the most one uid may have "
                         "(--max-connections-per-uid)",
                         disconnected)));
    return;
  }
  absl::StatusOr<Identity> verified = peer::IdentifyPeer(*credentials);
  if (!verified.ok()) {
    PeerLog(absl::StrCat("refusing uid ", uid, ": ", verified.status().message()));
    // Out of fds: the client is told so; any other failure means the peer
    // is gone, or the socket is not one to talk to.
    if (verified.status().code() == absl::StatusCode::kResourceExhausted) {
      Refuse(fd.get(), verified.status());
    }
    return;
  }
  absl::StatusOr<size_t> send_buffer = SetSendBuffer(fd.get(), kClientSendBufferBytes);
  if (!send_buffer.ok()) {
    PeerLog(absl::StrCat("refusing uid ", uid, ": ", send_buffer.status().message()));
    return;
  }
  absl::StatusOr<uint64_t> id = Register(std::move(fd), *std::move(verified), false,
                                         *send_buffer, fds_may_wait);
  if (!id.ok()) {
    PeerLog(id.status().message());
    return;
  }
  ++connections_per_uid_[uid].held;
}

absl::StatusOr<size_t> BrokerLoop::SetSendBuffer(int fd, int bytes) {
  int value = bytes / 2;  // the kernel doubles it
  // SO_SNDBUFFORCE goes beyond net.core.wmem_max, with CAP_NET_ADMIN (a
  // root broker); SO_SNDBUF does not.
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &value, sizeof(value)) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, sizeof(value)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", SO_SNDBUF)"));
  }
  // What the kernel made of it: the size that decides which replies need
  // SendWide.
  int effective = 0;
  socklen_t length = sizeof(effective);
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &effective, &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_SNDBUF)"));
  }
  return static_cast<size_t>(effective);
}

absl::StatusOr<bool> BrokerLoop::SendWide(Connection& connection, const iovec& iov,
                                          absl::Span<const int> fds) {
  // The buffer is widened for this one datagram, and only while less than
  // the usual buffer is in flight: the socket takes what it would take of
  // small replies, and no more than one such reply on top. Then narrowed:
  // nothing more goes until the client has read enough (EPOLLOUT).
  int fd = connection.fd.get();
  int in_flight = 0;
  if (ioctl(fd, SIOCOUTQ, &in_flight) != 0) {
    return ErrnoStatus(errno, absl::StrCat("ioctl(fd=", fd, ", SIOCOUTQ)"));
  }
  if (static_cast<size_t>(in_flight) >= connection.send_buffer) return false;
  int wide = static_cast<int>(
      (connection.send_buffer + iov.iov_len + 2 * kSendBufferReserve + 1) / 2);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &wide, sizeof(wide)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", SO_SNDBUF, wide)"));
  }
  absl::StatusOr<bool> sent = wire::SendDatagram(fd, &iov, 1, fds);
  int narrow = static_cast<int>(connection.send_buffer / 2);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &narrow, sizeof(narrow)) != 0) {
    absl::Status failed =
        ErrnoStatus(errno, absl::StrCat("setsockopt(fd=", fd, ", SO_SNDBUF)"));
    // A datagram that went out is delivered all the same; the buffer stays
    // wider by at most this one reply.
    if (sent.ok() && *sent) {
      PeerLog(failed.message());
      return true;
    }
    return failed;
  }
  return sent;
}

void BrokerLoop::Refuse(int fd, const absl::Status& why) {
  // The client has sent no request yet, maybe not even its hello: the
  // answer is an id-0 error, which a client takes as the answer to the call
  // it has outstanding (sdk/client/client.h). The socket is new and empty,
  // so the send cannot find it full; if it fails, the client is gone.
  Answer answer = ErrorAnswer(0, why, true);
  iovec iov{answer.words.begin(), answer.words.size() * sizeof(capnp::word)};
  (void)wire::SendDatagram(fd, &iov, 1, {});
}

absl::StatusOr<uint64_t> BrokerLoop::Register(UniqueFd&& fd, Identity identity,
                                              bool service, size_t send_buffer,
                                              bool fds_may_wait) {
  int raw = fd.get();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = static_cast<uint64_t>(raw);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw, &ev) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD fd=", raw, ")"));
  }
  if (static_cast<size_t>(raw) >= connections_.size()) {
    connections_.resize(static_cast<size_t>(raw) + 1);
  }
  auto connection = std::make_unique<Connection>();
  connection->fd = std::move(fd);
  connection->id = next_id_++;
  connection->service = service;
  connection->send_buffer = send_buffer;
  connection->fds_may_wait = fds_may_wait;
  connection->session.identity = std::move(identity);
  connection->session.connection_id = connection->id;
  connection->events = EPOLLIN;
  uint64_t id = connection->id;
  fd_by_id_[id] = raw;
  connections_[raw] = std::move(connection);
  ++stats_.connections;
  ++stats_.connections_total;
  return id;
}

absl::Status BrokerLoop::Watch(int fd, std::function<void()> on_readable) {
  if (!epoll_) return absl::InternalError("the event loop has no epoll fd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWatchBit | static_cast<uint64_t>(fd);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD fd=", fd, ")"));
  }
  watches_[fd] = std::move(on_readable);
  return absl::OkStatus();
}

void BrokerLoop::Unwatch(int fd) {
  if (watches_.erase(fd) == 0) return;
  // The fd is still open (the caller closes it after this): remove it, or
  // a dup elsewhere would keep it in the set.
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

absl::StatusOr<uint64_t> BrokerLoop::AddServiceConnection(UniqueFd fd, Identity identity) {
  if (!epoll_) return absl::InternalError("the event loop has no epoll fd");
  CB_ASSIGN_OR_RETURN(size_t send_buffer, SetSendBuffer(fd.get(), kServiceSendBufferBytes));
  return Register(std::move(fd), std::move(identity), true, send_buffer);
}

bool BrokerLoop::Send(uint64_t id, Answer answer) {
  auto it = fd_by_id_.find(id);
  if (it == fd_by_id_.end()) return false;
  Connection& connection = *connections_[it->second];
  if (Queue(connection, std::move(answer))) return true;
  Close(connection);
  return false;
}

bool BrokerLoop::Deliver(uint64_t id, Answer answer) {
  auto it = fd_by_id_.find(id);
  if (it == fd_by_id_.end()) return false;
  Connection& connection = *connections_[it->second];
  // What waits goes first, and SendQueued writes the audit log before it
  // sends anything (even with nothing queued).
  SendQueued(connection);
  if (connection.closed || !connection.queue.empty()) return false;
  QueuedReply reply{std::move(answer.words), std::move(answer.outcome.fds),
                    std::move(answer.outcome.shared_fd), answer.id, answer.outcome.audit_line,
                    std::move(answer.outcome.principal), answer.outcome.open};
  absl::StatusOr<bool> sent = Write(connection, reply);
  if (!sent.ok()) {
    CloseAfterWrite(connection, sent.status());
    return false;
  }
  return *sent;
}

void BrokerLoop::CloseConnection(uint64_t id) {
  auto it = fd_by_id_.find(id);
  if (it == fd_by_id_.end()) return;
  Connection& connection = *connections_[it->second];
  // The host closes only services' connections, when they stop.
  connection.closing_for = kServiceStopped;
  Close(connection, /*tell_host=*/false);
}

bool BrokerLoop::IsOpen(uint64_t id) const { return fd_by_id_.contains(id); }

std::string BrokerLoop::Holders() {
  const absl::Time now = absl::Now();
  // A clock set back counts again too, rather than wait for it.
  if (now < top_holder_.counted || now - top_holder_.counted >= kTopHolderRecountInterval) {
    top_holder_ = TopHolder{0, 0, now};
    for (const auto& [uid, count] : connections_per_uid_) {
      if (count.held > top_holder_.count ||
          (count.held == top_holder_.count && uid < top_holder_.uid)) {
        top_holder_.uid = uid;
        top_holder_.count = count.held;
      }
    }
  }
  std::string holders =
      absl::StrCat("clients of ", connections_per_uid_.size(),
                   connections_per_uid_.size() == 1 ? " uid" : " uids", " hold them");
  if (top_holder_.count > 0) {
    absl::StrAppend(&holders, ", uid ", top_holder_.uid, " the most (", top_holder_.count,
                    top_holder_.counted == now ? "" : ", as counted within the last second",
                    ")");
  }
  return holders;
}

void BrokerLoop::PeerLog(absl::string_view line) {
  uint64_t suppressed = 0;
  if (!peer_log_.Allow(absl::Now(), suppressed)) return;
  LogSuppressed(suppressed);
  std::fprintf(stderr, "capbrokerd: %.*s\n", static_cast<int>(line.size()), line.data());
}

void BrokerLoop::LogSuppressedPeerLines() { LogSuppressed(peer_log_.TakeSuppressed()); }

void BrokerLoop::LogSuppressed(uint64_t count) {
  if (count == 0) return;
  std::fprintf(stderr, "capbrokerd: (%llu similar lines suppressed)\n",
               static_cast<unsigned long long>(count));
}

void BrokerLoop::Close(Connection& connection, bool tell_host) {
  if (connection.closed) return;
  connection.closed = true;
  fd_by_id_.erase(connection.id);
  // Its connects waiting for a service would otherwise hold their places
  // (its uid's share) until the service is ready, and then hand the
  // service connections whose client end nobody holds. A hosted service
  // connects to others too, under its broker connection's id: told however
  // that closes, the host's own close (tell_host false) included.
  handler_.ClientConnectionClosed(
      connection.id,
      connection.closing_for.empty() ? kClientHungUp : connection.closing_for);
  if (connection.service && tell_host) handler_.ServiceConnectionLost(connection.id);
  // A flush inside AuditLog::Record (its buffer full) may have lost the
  // line of a grant still queued here since the last FlushAudit: that one
  // withholds it first, so that no line puts on record as not delivered a
  // grant the log does not hold.
  FlushAudit();
  Account(connection, -static_cast<long>(connection.queued_bytes),
          -static_cast<long>(connection.queued_fds));
  for (const QueuedReply& q : connection.queue) NotDelivered(connection, q.words, q.principal, q.open);
  connection.queue.clear();  // closes the fds of the replies not sent
  if (!Disconnect(connection)) Release(connection);
}

bool BrokerLoop::HoldsRepliesInFlight(const Connection& connection) {
  if (!connection.sent_fds) return false;
  int in_flight = 0;
  if (ioctl(connection.fd.get(), SIOCOUTQ, &in_flight) != 0) {
    // Cannot happen on an AF_UNIX socket; released rather than held with
    // nothing to tell when to let it go.
    PeerLog(absl::StrCat("ioctl(fd=", connection.fd.get(), ", SIOCOUTQ): ",
                         std::strerror(errno), "; releasing the connection of pid ",
                         connection.session.identity.pid));
    return false;
  }
  return in_flight >= kNothingInFlightBelow;
}

bool BrokerLoop::Disconnect(Connection& connection) {
  if (connection.service || !HoldsRepliesInFlight(connection)) return false;
  const int fd = connection.fd.get();
  // SHUT_WR: the client reads what is in flight, then end of stream, as
  // if the socket were closed. SHUT_RD: its sends fail (EPIPE) instead of
  // piling up unread here. Neither drops what its socket holds.
  if (shutdown(fd, SHUT_RDWR) != 0) {
    PeerLog(absl::StrCat("shutdown(fd=", fd, "): ", std::strerror(errno),
                         "; releasing the connection of pid ", connection.session.identity.pid));
    return false;
  }
  // Edge-triggered, EPOLLOUT: the kernel wakes a socket's writers each
  // time a datagram it sent is freed while its send buffer is at most a
  // quarter full (unix_write_space), which the last one always leaves it;
  // the peer's close wakes them too (EPOLLHUP, then its queue is dropped).
  // Level-triggered, the hang-up of our own shutdown and the buffer with
  // room would report it every turn.
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLET;
  ev.data.u64 = static_cast<uint64_t>(fd);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    PeerLog(absl::StrCat("epoll_ctl(MOD fd=", fd, "): ", std::strerror(errno),
                         "; releasing the connection of pid ", connection.session.identity.pid));
    return false;
  }
  connection.events = ev.events;
  connection.disconnected = true;
  ++connections_per_uid_[connection.session.identity.uid].disconnected;
  return true;
}

void BrokerLoop::Release(Connection& connection) {
  if (!connection.service) {
    auto it = connections_per_uid_.find(connection.session.identity.uid);
    if (it != connections_per_uid_.end()) {
      if (connection.disconnected) --it->second.disconnected;
      if (--it->second.held == 0) connections_per_uid_.erase(it);
    }
  }
  connection.disconnected = false;
  --stats_.connections;
  int fd = connection.fd.get();
  closed_.push_back(std::move(connections_[fd]));
  // Closing the socket removes it from the epoll set (we never dup it).
  Discard(std::move(connection.fd), connection.fds_may_wait);
}

void BrokerLoop::CloseAfterWrite(Connection& connection, const absl::Status& failed) {
  // kUnavailable: the peer closed its end (EPIPE, ECONNRESET).
  if (failed.code() != absl::StatusCode::kUnavailable) connection.closing_for = kSocketFailed;
  Close(connection);
}

void BrokerLoop::Reap() { closed_.clear(); }

void BrokerLoop::NotDelivered(const Connection& connection,
                              kj::ArrayPtr<const capnp::word> reply,
                              const std::string& principal, const audit::OpenOptions& open,
                              absl::string_view why) {
  if (principal.empty()) return;
  if (why.empty()) why = connection.closing_for.empty() ? kClientHungUp : connection.closing_for;
  handler_.GrantNotDelivered(connection.session, reply, principal, open, why);
}

void BrokerLoop::OnReadable(Connection& connection) {
  for (int i = 0; i < kDatagramsPerWakeup; ++i) {
    if (connection.closed || connection.close_when_flushed) return;
    bool keep = false;
    // OnDatagram catches what reading a request can throw; this is the last
    // line of defence: whatever else a client triggers costs it its
    // connection, never the broker its life.
    kj::Maybe<kj::Exception> escaped = kj::runCatchingExceptions(
        [&] { keep = OnDatagram(connection); });
    KJ_IF_MAYBE(e, escaped) {
      PeerLog(absl::StrCat("closing pid ", connection.session.identity.pid,
                           " after an internal error: ", e->getDescription().cStr()));
      connection.closing_for = kInternalError;
      keep = false;
    }
    if (!keep) {
      Close(connection);
      return;
    }
  }
}

bool BrokerLoop::MayRead(Connection& connection) {
  absl::StatusOr<wire::Waiting> waiting = wire::PeekDatagram(connection.fd.get());
  if (!waiting.ok()) return false;  // gone, or unusable: closed (set aside)
  if (*waiting == wire::Waiting::kNothing) {
    // Drained: what comes from now on cannot carry fds.
    connection.fds_may_wait = false;
    return true;
  }
  if (*waiting == wire::Waiting::kDatagram) return true;
  if (*waiting == wire::Waiting::kEndOfStream) return false;  // nothing unread: closed
  PeerLog(absl::StrCat("pid ", connection.session.identity.pid, " (uid ",
                       connection.session.identity.uid,
                       ") sent fds before the broker could refuse them: its connection is "
                       "set aside, never read again"));
  connection.closing_for = kSentFds;
  return false;
}

bool BrokerLoop::OnDatagram(Connection& connection) {
  // Requests carry no fds, and the broker never takes any: its sockets
  // refuse them (wire::RefuseFds), so nothing a client attaches is ever
  // queued. Where the kernel cannot refuse (before Linux 6.16), receiving
  // without room for fds is what is left (see wire::FdPolicy::kRefuse). A
  // connection made before its listener refused fds is looked at first.
  if (connection.fds_may_wait && !MayRead(connection)) return false;
  absl::StatusOr<std::optional<wire::Datagram>> received = wire::ReceiveDatagram(
      connection.fd.get(), receive_buffer_, wire::FdPolicy::kRefuse);
  // Taken: once nothing waits, the connection is as any other.
  if (connection.fds_may_wait && received.ok()) {
    absl::StatusOr<wire::Waiting> next = wire::PeekDatagram(connection.fd.get());
    if (next.ok() && *next == wire::Waiting::kNothing) connection.fds_may_wait = false;
  }
  if (!received.ok()) {
    if (absl::IsUnavailable(received.status())) return false;
    // Too large, or not whole words: the client's. recvmsg failing (ENOMEM,
    // say) is not, and is no request to deny.
    if (wire::IsMalformedDatagram(received.status())) {
      handler_.DenyRequest(connection.session, "invalid", received.status());
      return Queue(connection, ErrorAnswer(0, received.status(), false));
    }
    PeerLog(received.status().message());
    connection.closing_for = kSocketFailed;
    return false;
  }
  if (!received->has_value()) return true;  // nothing to read after all
  const wire::Datagram& datagram = **received;
  Answer answer = AnswerRequest(handler_, connection.session, datagram.words,
                                datagram.fds_cut, scratch_.asPtr());
  if (answer.outcome.deferred) {
    // The service host answers in a later turn, once the service is ready,
    // when this turn's lost lines are long forgotten: the grant's line must
    // be on record before the request waits there.
    if (AuditLinesLost({answer.outcome.audit_line}).empty()) return true;
    handler_.WithdrawConnect(connection.id, answer.id);
    return Queue(connection, Withheld(answer.id));
  }
  if (answer.outcome.effects.pending()) Settle(connection, answer);
  const bool answer_waiting = answer.outcome.answer_waiting;
  const bool queued = Queue(connection, std::move(answer));
  if (answer_waiting) {
    // A service's `ready`: its reply is in the queue now, which each
    // Deliver of the connects that waited sends first (see
    // ServiceDirectory::Ready). A connection that could not queue it is
    // closed first: the host then refuses them, and hands nothing to a
    // service about to lose its connection.
    if (!queued) Close(connection);
    handler_.AnswerWaitingConnects(connection.session);
  }
  return queued;
}

void BrokerLoop::Settle(const Connection& connection, Answer& answer) {
  if (!AuditLinesLost({answer.outcome.audit_line}).empty()) {
    RequestHandler::UndoEffects(absl::MakeSpan(&answer.outcome.effects, 1));
    PeerLog("withheld 1 grant: its audit line could not be written");
    answer = Withheld(answer.id);
    return;
  }
  // The grant's fd, the file open (Acquire, OpenBeneath).
  absl::Status completed = answer.outcome.effects.Complete(answer.outcome.fds[0].get());
  if (completed.ok()) return;
  // Its line says granted: a second one says it was not delivered, and why.
  const std::string why = absl::StrCat("the file could not be emptied (", completed.message(),
                                       ")");
  NotDelivered(connection, answer.words, answer.outcome.principal, answer.outcome.open, why);
  answer = ErrorAnswer(answer.id,
                       absl::Status(completed.code(), absl::StrCat(
                                        "the broker granted this open, but ", why,
                                        "; nothing was delivered")),
                       answer.outcome.close_after_reply);
}

bool BrokerLoop::Fits(const Connection& connection, size_t bytes) const {
  if (connection.queued_bytes + bytes > limits_.max_queued_bytes) return false;
  return connection.queue.size() < limits_.max_queued_replies;
}

bool BrokerLoop::MakeFit(Connection& connection, size_t bytes) {
  if (Fits(connection, bytes)) return true;
  // Replies for one connection can pile up within a turn (the connects
  // that waited for a service are all answered when it becomes ready):
  // what the socket takes now is not "not read".
  SendQueued(connection);
  return !connection.closed && Fits(connection, bytes);
}

void BrokerLoop::Account(Connection& connection, long bytes, long fds) {
  connection.queued_bytes += bytes;
  connection.queued_fds += fds;
  // Services are bounded one by one (Fits), and never disconnected to make
  // room: they stay out of the totals that MakeRoom keeps.
  if (connection.service) return;
  queued_bytes_total_ += bytes;
  queued_fds_total_ += fds;
}

bool BrokerLoop::Queue(Connection& connection, Answer answer) {
  // Every reply waits in the connection's queue until SendPending(), which
  // first writes the audit lines of the whole batch: a grant is on record
  // before it is delivered, for the price of one write(2) per loop turn.
  // An answer dropped here goes with its connection, which the caller
  // closes (or which is closed already).
  auto drop = [&] {
    NotDelivered(connection, answer.words, answer.outcome.principal, answer.outcome.open);
    return false;
  };
  if (connection.closed) return drop();
  size_t bytes = answer.words.size() * sizeof(capnp::word);
  size_t fds = answer.outcome.fds.size();
  const bool fits = MakeFit(connection, bytes);
  const Room room =
      fits && !connection.service ? MakeRoom(connection, bytes, fds) : Room::kMade;
  // MakeFit and MakeRoom may have sent, and so written the audit log,
  // after this answer's line was recorded and before it is queued, where
  // FlushAudit would have found it: a grant whose line went then is
  // withheld here, before anything else is decided, so that a drop below
  // never puts on record as not delivered a grant the log does not hold.
  // The error reply is a few hundred bytes: the limits are not checked
  // again for it (as in FlushAudit).
  if (answer.outcome.audit_line != 0 && LostThisTurn(answer.outcome.audit_line)) {
    PeerLog("withheld 1 grant: its audit line could not be written");
    answer = Withheld(answer.id);
    bytes = answer.words.size() * sizeof(capnp::word);
    fds = 0;
  }
  if (!fits) {
    if (connection.closed) return drop();
    connection.closing_for = kQueueFull;
    if (connection.service) return drop();
    PeerLog(absl::StrCat("disconnecting pid ", connection.session.identity.pid, " (uid ",
                         connection.session.identity.uid, "): it does not read its replies (",
                         connection.queue.size(), " queued)"));
    return drop();
  }
  if (room == Room::kRequesterGoes) return drop();
  if (room == Room::kNone) {
    // This reply alone is over a budget, with nothing else queued: it
    // cannot come from the flags' bounds (a budget holds at least one
    // reply of the largest size, and at least one fd; a client's reply
    // holds at most one fd that counts), but fail closed if it does. The
    // client reads, so it is refused, not disconnected. A grant's line
    // already says granted: a second line says it was not delivered.
    const absl::Status refused = absl::ResourceExhaustedError(absl::StrCat(
        "the broker could not queue this reply: alone it is over the budget for the "
        "replies of all connections (--max-queued-reply-bytes ",
        limits_.max_queued_bytes_total, ", --max-queued-reply-fds ",
        limits_.max_queued_fds_total, "); nothing was delivered. Raise the limits"));
    PeerLog(absl::StrCat("refused a reply of ", bytes, " bytes and ", fds,
                         " fds to pid ", connection.session.identity.pid,
                         ": over the budget on its own"));
    if (answer.outcome.principal.empty()) {
      handler_.CountDenial(refused);
    } else {
      NotDelivered(connection, answer.words, answer.outcome.principal, answer.outcome.open,
                   "alone it was over the budget for the replies of all connections");
    }
    answer = ErrorAnswer(answer.id, refused, answer.outcome.close_after_reply);
    bytes = answer.words.size() * sizeof(capnp::word);
    fds = 0;
  }
  connection.queue.push_back(QueuedReply{
      std::move(answer.words), std::move(answer.outcome.fds),
      std::move(answer.outcome.shared_fd), answer.id, answer.outcome.audit_line,
      std::move(answer.outcome.principal), answer.outcome.open});
  Account(connection, static_cast<long>(bytes), static_cast<long>(fds));
  if (answer.outcome.close_after_reply && !connection.close_when_flushed) {
    connection.close_when_flushed = true;
    if (!UpdateEvents(connection)) return false;  // read nothing more from it
  }
  if (!connection.pending_send) {
    connection.pending_send = true;
    pending_sends_.push_back(connection.fd.get());
  }
  return true;
}

void BrokerLoop::SendPending() {
  // SendQueued writes the turn's audit lines before the first reply goes.
  for (int fd : pending_sends_) {
    // The fd may have been closed, and even reused by a new connection,
    // since it was marked: sending an empty queue is harmless.
    if (fd < static_cast<int>(connections_.size()) && connections_[fd]) {
      connections_[fd]->pending_send = false;
      SendQueued(*connections_[fd]);
    }
  }
  pending_sends_.clear();
}

absl::StatusOr<bool> BrokerLoop::Write(Connection& connection, QueuedReply& reply) {
  int raw[wire::kMaxFdsPerMessage];
  size_t n = 0;
  for (const UniqueFd& f : reply.fds) raw[n++] = f.get();
  if (reply.shared_fd) raw[n++] = reply.shared_fd->get();
  iovec iov{reply.words.begin(), reply.words.size() * sizeof(capnp::word)};
  // A reply larger than the connection's send buffer (a list of a large
  // policy) would fail with EMSGSIZE: it goes through SendWide. Grants
  // are a few hundred bytes, far below.
  absl::StatusOr<bool> sent =
      connection.send_buffer != 0 && iov.iov_len + kSendBufferReserve > connection.send_buffer
          ? SendWide(connection, iov, absl::MakeConstSpan(raw, n))
          : wire::SendDatagram(connection.fd.get(), &iov, 1, absl::MakeConstSpan(raw, n));
  if (n > 0 && sent.ok() && *sent) connection.sent_fds = true;
  return sent;
}

void BrokerLoop::SendQueued(Connection& connection) {
  FlushAudit();
  // Closed this turn, still listed in pending_sends_: nothing queued, and
  // its epoll events, a disconnected one's included, are not to change.
  if (connection.closed) return;
  size_t sent_count = 0;
  absl::Status failed;
  for (QueuedReply& q : connection.queue) {
    absl::StatusOr<bool> sent = Write(connection, q);
    if (!sent.ok()) {
      failed = sent.status();
      break;
    }
    if (!*sent) break;  // the socket is full: EPOLLOUT brings us back
    Account(connection, -static_cast<long>(q.words.size() * sizeof(capnp::word)),
            -static_cast<long>(q.fds.size()));
    ++sent_count;
  }
  // What went out is delivered, even if a later send failed: only what is
  // left may be put on record as not delivered (Close).
  connection.queue.erase(connection.queue.begin(),
                         connection.queue.begin() + static_cast<long>(sent_count));
  if (!failed.ok()) {
    CloseAfterWrite(connection, failed);
    return;
  }
  if (connection.queue.empty() && connection.close_when_flushed) {
    Close(connection);
    return;
  }
  if (!UpdateEvents(connection)) Close(connection);
}

bool BrokerLoop::UpdateEvents(Connection& connection) {
  // Input is watched unless the connection only waits to flush its last
  // replies and close: epoll is level-triggered, and unread input that
  // will never be read would wake the loop forever.
  uint32_t events = connection.close_when_flushed ? 0u : uint32_t{EPOLLIN};
  if (!connection.queue.empty()) events |= uint32_t{EPOLLOUT};
  if (events == connection.events) return true;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = static_cast<uint64_t>(connection.fd.get());
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, connection.fd.get(), &ev) != 0) {
    // Left as it was, epoll would never report EPOLLOUT for replies waiting
    // in the queue (they would wait forever), or would go on reporting
    // input the loop means to ignore (waking it forever).
    PeerLog(absl::StrCat("epoll_ctl(MOD fd=", connection.fd.get(), "): ",
                         std::strerror(errno), "; closing the connection of pid ",
                         connection.session.identity.pid));
    connection.closing_for = kEpollFailed;
    return false;
  }
  connection.events = events;
  return true;
}

BrokerLoop::Room BrokerLoop::MakeRoom(Connection& requester, size_t bytes, size_t fds) {
  bool sent_untried = false;
  for (;;) {
    bool bytes_over = queued_bytes_total_ + bytes > limits_.max_queued_bytes_total;
    bool fds_over = queued_fds_total_ + fds > limits_.max_queued_fds_total;
    if (!bytes_over && !fds_over) return Room::kMade;
    if (!sent_untried) {
      // Every reply waits in its queue until the end of its turn, so a
      // queue can hold replies no send has tried yet: those of clients
      // that read everything. They are tried now; what stays queued after
      // that is what a full socket did not take, held by a client that
      // does not read.
      sent_untried = true;
      SendUntried();
      if (requester.closed) return Room::kRequesterGoes;
      continue;
    }
    // A scan of every connection, but only when a budget is exhausted;
    // each round frees what the largest holder of it had queued.
    auto held = [&](const Connection& c) { return bytes_over ? c.queued_bytes : c.queued_fds; };
    // Services hold nothing of the totals (see Account).
    Connection* largest = nullptr;
    for (const std::unique_ptr<Connection>& c : connections_) {
      if (c && !c->service && held(*c) > 0 && (largest == nullptr || held(*c) > held(*largest))) {
        largest = c.get();
      }
    }
    if (largest == nullptr) return Room::kNone;
    PeerLog(absl::StrCat("disconnecting pid ", largest->session.identity.pid, " (uid ",
                         largest->session.identity.uid, "): it does not read its replies (",
                         held(*largest), bytes_over ? " bytes" : " fds",
                         " queued), and all connections together hold the limit of ",
                         bytes_over ? limits_.max_queued_bytes_total
                                    : limits_.max_queued_fds_total));
    largest->closing_for = kAllQueuesFull;
    if (largest == &requester) return Room::kRequesterGoes;
    Close(*largest);
  }
}

void BrokerLoop::SendUntried() {
  // pending_sends_ lists every client whose queue got replies this turn;
  // any other queue that holds something was tried and found its socket
  // full. SendQueued changes no list entry; a connection it closes leaves
  // its slot empty (or to a new connection, whose queue is empty).
  for (int fd : pending_sends_) {
    if (fd >= static_cast<int>(connections_.size()) || !connections_[fd]) continue;
    Connection& connection = *connections_[fd];
    if (!connection.service && !connection.queue.empty()) SendQueued(connection);
  }
}

std::vector<uint64_t> BrokerLoop::AuditLinesLost(const std::vector<uint64_t>& lines) {
  std::vector<audit::AuditLog::LineRange> lost = FlushAudit();
  std::vector<uint64_t> not_written;
  for (uint64_t line : lines) {
    if (std::any_of(lost.begin(), lost.end(),
                    [&](const audit::AuditLog::LineRange& r) { return r.Contains(line); })) {
      not_written.push_back(line);
    }
  }
  return not_written;
}

std::vector<audit::AuditLog::LineRange> BrokerLoop::FlushAudit() {
  if (audit_.has_pending()) audit_.Flush();
  // Copied whether or not anything was pending: lines are lost by flushes
  // the loop does not make too (inside AuditLog::Record, at a Reopen).
  stats_.audit_lines_dropped = audit_.lines_dropped();
  stats_.audit_lines_to_deleted_files = audit_.lines_to_deleted_files();
  // A flush that found the file deleted and reopened the path (or could
  // not) says so here; shown in status as a SIGHUP's reopen.
  if (std::optional<absl::Status> reopened = audit_.TakeReopenAfterDeletion()) {
    stats_.audit_reopen_error = std::string(reopened->message());
  }
  // Lines can also be lost by a flush inside AuditLog::Record (a full
  // buffer): ask even when nothing is pending now.
  std::vector<audit::AuditLog::LineRange> lost = audit_.TakeLostLines();
  if (lost.empty()) return lost;
  lost_this_turn_.insert(lost_this_turn_.end(), lost.begin(), lost.end());
  // A lost line's reply has not been sent (nothing is sent before this
  // runs), so it is in some queue. Every queue is searched: this runs only
  // when the log failed.
  size_t count = 0;
  for (const std::unique_ptr<Connection>& c : connections_) {
    if (!c) continue;
    for (QueuedReply& q : c->queue) {
      if (q.audit_line == 0 ||
          std::none_of(lost.begin(), lost.end(), [&](const audit::AuditLog::LineRange& r) {
            return r.Contains(q.audit_line);
          })) {
        continue;
      }
      // The error reply is a few hundred bytes: the queue limits are not
      // checked again for it. Its fds are closed with the old reply.
      Answer error = Withheld(q.id);
      size_t old_bytes = q.words.size() * sizeof(capnp::word);
      size_t new_bytes = error.words.size() * sizeof(capnp::word);
      Account(*c, static_cast<long>(new_bytes) - static_cast<long>(old_bytes),
              -static_cast<long>(q.fds.size()));
      q = QueuedReply{std::move(error.words), {}, nullptr, q.id, 0, {}, {}};
      ++count;
    }
  }
  if (count > 0) {
    PeerLog(absl::StrCat("withheld ", count,
                         " grants: their audit lines could not be written"));
  }
  return lost;
}

bool BrokerLoop::LostThisTurn(uint64_t line) const {
  return std::any_of(lost_this_turn_.begin(), lost_this_turn_.end(),
                     [&](const audit::AuditLog::LineRange& r) { return r.Contains(line); });
}

Answer BrokerLoop::Withheld(uint64_t request_id) {
  const absl::Status withheld = absl::UnavailableError(
      "the broker could not write this grant's audit line, so it withheld the "
      "grant; nothing was granted");
  --stats_.grants;
  handler_.CountDenial(withheld);
  return ErrorAnswer(request_id, withheld, false);
}

}  // namespace capbroker::server

#include "sdk/service/connection_loop.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "capnp/serialize.h"
#include "kj/array.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/fd_room.h"
#include "sdk/service/try_accept.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker {
namespace {

// Events taken per epoll_wait; more simply wait for the next turn.
constexpr int kEventsPerTurn = 64;

// OK when `datagram` carries at most `max` fds; otherwise the refusal to
// answer it with.
absl::Status CheckFdCount(const wire::Datagram& datagram, size_t max) {
  if (datagram.fds_cut) {
    return absl::InvalidArgumentError(
        "requests to this service carry no fds; this one carried some, which were discarded "
        "unopened");
  }
  if (datagram.fds.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat("requests to this service carry at most ", max,
                                                   " fds; this one came with ",
                                                   datagram.fds.size()));
  }
  return absl::OkStatus();
}

}  // namespace

Peer PeerOf(const IncomingConnection& incoming) {
  return Peer{incoming.principal, incoming.uid, incoming.gid, incoming.pid};
}

std::string DescribePeer(const Peer& peer) {
  return absl::StrCat("principal '", Shown(peer.principal), "' (uid ", peer.uid, ", pid ",
                      peer.pid, ")");
}

absl::Status SendRefusal(int connection, RequestHandler& handler, const absl::Status& reason) {
  capnp::MallocMessageBuilder reply(64);
  return CatchKj("refusal reply", [&]() -> absl::Status {
    // Without a reply of its protocol the connection just closes.
    if (!handler.SetRefusal(reason, reply)) return absl::OkStatus();
    CB_ASSIGN_OR_RETURN(wire::OutgoingFrame frame, wire::OutgoingFrame::Of(reply));
    // Never blocks: a new connection's queue is empty (nothing was sent on
    // the service's end before), and if it were not, the reply would be
    // dropped (SendDatagram: false), not waited for.
    CB_RETURN_IF_ERROR(SetNonBlocking(connection, true));
    return wire::SendDatagram(connection, frame.iov(), frame.iov_count(), {}).status();
  });
}

struct ConnectionLoop::Connection {
  // A reply the socket had no room for: sent when it becomes writable.
  struct Pending {
    kj::Array<capnp::word> words;
    std::vector<UniqueFd> fds;
  };

  UniqueFd fd;
  Peer peer;
  std::optional<Pending> pending;
};

ConnectionLoop::ConnectionLoop(Client& broker, RequestHandler& handler, Options options)
    : broker_(&broker),
      handler_(handler),
      options_(options),
      max_connections_(options.max_connections),
      buffer_(std::make_unique<wire::ReceiveBuffer>()),
      log_(options.max_log_lines_per_second) {}

ConnectionLoop::ConnectionLoop(IncomingConnection connection, RequestHandler& handler,
                               Options options)
    : broker_(nullptr),
      single_(std::move(connection)),
      handler_(handler),
      options_(options),
      max_connections_(options.max_connections),
      buffer_(std::make_unique<wire::ReceiveBuffer>()),
      log_(options.max_log_lines_per_second) {}

ConnectionLoop::~ConnectionLoop() = default;

absl::Status ConnectionLoop::Init() {
  CB_ASSIGN_OR_RETURN(epoll_, TakeFd(epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
  if (broker_ == nullptr) return absl::OkStatus();
  // A connection takes one fd. Beyond what the fd table holds, the
  // broker's next `incoming` would arrive without its fd (see fd_room.h)
  // and end the loop for every client. The fds of a request, or of a reply
  // the handler adds, mostly come and go within a turn (the reserve), but
  // not all: a handler may keep a request's, and a reply waits, its fds
  // held, for a client that does not read. So this count is not enough:
  // Add and Reply also look at the table itself (HasFdRoom). The
  // connections the Client queued hold their fds already: they are among
  // those the loop will hold, not fds used for good.
  CB_ASSIGN_OR_RETURN(size_t room,
                      FdRoomFor(max_connections_, kFdReserve + options_.max_request_fds,
                                broker_->queued_incoming()));
  if (room < max_connections_) {
    log_.Line(FdRoomLine(room, max_connections_, "client connections"));
    max_connections_ = room;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = broker_->fd();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, broker_->fd(), &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(ADD, broker fd=", broker_->fd(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ConnectionLoop::Run() {
  for (;;) {
    CB_ASSIGN_OR_RETURN(bool serving, Turn(-1));
    if (!serving) return absl::OkStatus();
  }
}

absl::StatusOr<bool> ConnectionLoop::Turn(int timeout_ms) {
  // What epoll cannot show (see AcceptWithoutReadiness) is taken first.
  bool take_queued = broker_ != nullptr && AcceptWithoutReadiness(*broker_);
  if (!started_) {
    CB_RETURN_IF_ERROR(Init());
    started_ = true;
    if (single_.has_value()) {
      Add(std::move(*single_));
      single_.reset();
      return !connections_.empty();
    }
    take_queued = true;  // and say what the Client dropped before
  }
  if (take_queued) {
    const size_t before = connections_.size();
    CB_ASSIGN_OR_RETURN(bool open, AcceptAll());
    if (!open) return false;
    // That was this turn's work, if there was any: do not wait after it.
    if (connections_.size() != before) timeout_ms = 0;
  }
  epoll_event events[kEventsPerTurn];
  int n = epoll_wait(epoll_.get(), events, kEventsPerTurn, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return true;
    return ErrnoStatus(errno, "epoll_wait");
  }
  bool broker_ready = false;
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (broker_ != nullptr && fd == broker_->fd()) {
      broker_ready = true;
      continue;
    }
    auto it = connections_.find(fd);
    if (it == connections_.end()) continue;
    Connection& c = *it->second;
    // One request per connection per turn: a busy client cannot starve
    // the others.
    if (!(c.pending ? Flush(c) : Serve(c))) Close(fd);
  }
  // New connections last, so that no fd number closed above is reused
  // within this batch of events.
  if (broker_ready) return AcceptAll();
  return broker_ != nullptr || !connections_.empty();
}

absl::StatusOr<bool> ConnectionLoop::AcceptAll() {
  for (;;) {
    absl::StatusOr<std::optional<IncomingConnection>> next = TryAccept(*broker_);
    // What the Client dropped meanwhile (fd_room.h), said once.
    if (auto dropped = DroppedIncomingLine(broker_->dropped_incoming(), &dropped_seen_)) {
      log_.Line(*dropped);
    }
    if (!next.ok()) {
      if (next.status().code() == absl::StatusCode::kUnavailable) return false;
      return next.status();
    }
    if (!next->has_value()) return true;
    Add(std::move(**next));
  }
}

void ConnectionLoop::Add(IncomingConnection incoming) {
  // A connection refused here gets the handler's refusal reply, which its
  // client reads as the reply to its first request, and is closed when
  // `incoming.fd` goes: the client then sees end of stream.
  if (connections_.size() >= max_connections_) {
    if (!refusing_) {
      log_.Line(absl::StrCat("at the limit of ", max_connections_,
                       " connections: closing new ones until one ends"));
      refusing_ = true;
    }
    Refuse(incoming, absl::ResourceExhaustedError(absl::StrCat(
                         "the service serves at most ", max_connections_, " connections at once")));
    return;
  }
  if (broker_ != nullptr && !HasFdRoom()) {
    if (!refusing_) {
      log_.Line("the open-file limit (RLIMIT_NOFILE: the service's limits.openFiles) is "
                "nearly reached, by fds held beyond one a connection (replies waiting for "
                "clients that do not read them, fds the handler kept): closing new "
                "connections until there is room");
      refusing_ = true;
    }
    Refuse(incoming, absl::ResourceExhaustedError(
                         "the service has no room for another connection now (its open-file "
                         "limit); try again later"));
    return;
  }
  refusing_ = false;
  auto held = connections_per_uid_.find(incoming.uid);
  if (held != connections_per_uid_.end() && held->second >= options_.max_connections_per_uid) {
    log_.Line(absl::StrCat("uid ", incoming.uid, " holds the limit of ",
                           options_.max_connections_per_uid,
                           " connections per uid: closing a new one of ",
                           DescribePeer(PeerOf(incoming))));
    Refuse(incoming, absl::ResourceExhaustedError(absl::StrCat(
                         "the service serves at most ", options_.max_connections_per_uid,
                         " connections of uid ", incoming.uid, " at once")));
    return;
  }
  auto c = std::make_unique<Connection>();
  c->fd = std::move(incoming.fd);
  c->peer = Peer{std::move(incoming.principal), incoming.uid, incoming.gid, incoming.pid};
  absl::Status status = SetNonBlocking(c->fd.get(), true);
  if (status.ok() && options_.max_request_fds == 0) {
    // The broker turned fd-passing off on this end before the client had
    // its own (unless the service's policy says acceptsFds): this is for
    // connections made otherwise, from now on. A kernel that cannot
    // (before Linux 6.16) leaves FdPolicy::kRefuse alone.
    status = wire::RefuseFdsWhereSupported(c->fd.get());
  }
  if (status.ok()) status = Watch(*c, true);
  if (!status.ok()) {
    log_.Line(absl::StrCat("cannot serve a connection of ", DescribePeer(c->peer), ": ",
                     status.ToString()));
    return;
  }
  const int fd = c->fd.get();
  ++connections_per_uid_[c->peer.uid];
  connections_.emplace(fd, std::move(c));
}

bool ConnectionLoop::Serve(Connection& c) {
  absl::StatusOr<std::optional<wire::Datagram>> datagram = wire::ReceiveDatagram(
      c.fd.get(), *buffer_,
      options_.max_request_fds == 0 ? wire::FdPolicy::kRefuse : wire::FdPolicy::kAccept);
  if (!datagram.ok()) {
    if (datagram.status().code() != absl::StatusCode::kUnavailable) {
      // kInvalidArgument: not a whole number of words.
      ClosedForTheClient(c,
                         datagram.status().code() == absl::StatusCode::kInvalidArgument
                             ? ClientFault::kNotAMessage
                             : ClientFault::kReceive,
                         datagram.status());
    }
    return false;
  }
  if (!datagram->has_value()) return true;  // woken without a datagram
  absl::Status framing = wire::ValidateFraming((*datagram)->words);
  std::optional<capnp::FlatArrayMessageReader> reader;
  if (framing.ok()) {
    framing = CatchKj("request framing", [&] {
      reader.emplace((*datagram)->words, wire::ReaderLimits());
      return absl::OkStatus();
    });
  }
  if (!framing.ok()) {
    ClosedForTheClient(
        c, ClientFault::kNotAMessage,
        absl::Status(framing.code(), absl::StrCat("not a message: ", framing.message())));
    return false;
  }
  Exchange exchange(c.peer, *reader);
  absl::Status handled;
  ClientFault fault = ClientFault::kHandler;
  absl::Status refusal = CheckFdCount(**datagram, options_.max_request_fds);
  if (!refusal.ok()) {
    // Any fds that came are closed with the datagram, unseen by the handler.
    handled = CatchKj("refused request", [&] {
      if (handler_.SetRefusal(refusal, exchange.reply)) return absl::OkStatus();
      fault = ClientFault::kFds;  // no refusal reply: the connection closes
      return refusal;
    });
  } else {
    exchange.request_fds = std::move((*datagram)->fds);
    handled = CatchKj("request", [&] { return handler_.Handle(exchange); });
    exchange.request_fds.clear();  // closes what the handler left
  }
  if (!handled.ok()) {
    ClosedForTheClient(c, fault, handled);
    return false;
  }
  return Reply(c, exchange);
}

void ConnectionLoop::Refuse(const IncomingConnection& incoming, const absl::Status& reason) {
  absl::Status sent = SendRefusal(incoming.fd.get(), handler_, reason);
  // A client gone already is no news; anything else is the service's bug.
  if (!sent.ok() && sent.code() != absl::StatusCode::kUnavailable) {
    log_.Line(absl::StrCat("cannot send the refusal to ", DescribePeer(PeerOf(incoming)), ": ",
                           sent.ToString()));
  }
}

bool ConnectionLoop::KeptForTheExit(ClientFault kind, const absl::Status& why) {
  if (broker_ != nullptr) return false;
  // One connection, in a worker: a line per worker would be a line per
  // connection, which a client can open without end, each worker with a
  // budget of its own. The worker's exit says it (forking_server.h), and
  // the main process logs that within its one budget.
  client_fault_ = why;
  client_fault_kind_ = kind;
  return true;
}

void ConnectionLoop::ClosedForTheClient(const Connection& c, ClientFault kind,
                                        const absl::Status& why) {
  if (KeptForTheExit(kind, why)) return;
  log_.Line(absl::StrCat("closed the connection of ", DescribePeer(c.peer), ": ", why.ToString()));
}

void ConnectionLoop::ReplyNotSent(const Connection& c, const absl::Status& why) {
  switch (why.code()) {
    case absl::StatusCode::kUnavailable:  // the client is gone: no news
      return;
    case absl::StatusCode::kPermissionDenied:
      // The client's socket refuses fds (SO_PASSRIGHTS off) and the reply
      // carries some: the client's doing, said as other client faults are.
      // In words of its own: wire::SendDatagram's advice is for a sender
      // to the broker or to a hosted service, not to a service's client.
      ClosedForTheClient(c, ClientFault::kRefusesReplyFds,
                         absl::PermissionDeniedError(
                             "the client's socket refuses the fds of its reply (SO_PASSRIGHTS "
                             "off)"));
      return;
    default:
      // The service's bug (a reply too large, more fds than a datagram
      // carries) or an error of the kernel's: the client only sees the
      // connection close, so the log says why. A worker says it by its
      // exit code, as it says a client's fault: a client can cause the
      // kernel's ETOOMANYREFS (the fds in flight from the service's uid,
      // in replies its clients do not read, over its RLIMIT_NOFILE), and
      // a line of a worker's own would be a line per connection.
      if (KeptForTheExit(ClientFault::kReplyNotSent, why)) return;
      log_.Line(absl::StrCat("cannot answer ", DescribePeer(c.peer), ": ", why.ToString()));
  }
}

bool ConnectionLoop::Reply(Connection& c, Exchange& exchange) {
  absl::StatusOr<wire::OutgoingFrame> frame = wire::OutgoingFrame::Of(exchange.reply);
  if (!frame.ok()) {
    ReplyNotSent(c, frame.status());
    return false;
  }
  std::vector<int> reply_fds;
  for (const UniqueFd& fd : exchange.reply_fds) reply_fds.push_back(fd.get());
  absl::StatusOr<bool> sent =
      wire::SendDatagram(c.fd.get(), frame->iov(), frame->iov_count(), reply_fds);
  if (!sent.ok()) {
    ReplyNotSent(c, sent.status());
    return false;
  }
  if (*sent) return true;
  // The client's receive queue is full: keep the reply and stop reading
  // this connection's requests until it has room. Its fds stay in the fd
  // table meanwhile, for as long as the client likes: not at the cost of
  // the room the broker's next `incoming` needs.
  if (broker_ != nullptr && !exchange.reply_fds.empty() && !HasFdRoom()) {
    log_.Line(absl::StrCat("closed the connection of ", DescribePeer(c.peer),
                           ": it does not read its replies, and the open-file limit "
                           "(RLIMIT_NOFILE: the service's limits.openFiles) leaves no room to "
                           "hold one with ",
                           exchange.reply_fds.size(), " fds until it does"));
    return false;
  }
  absl::StatusOr<kj::Array<capnp::word>> words = wire::Flatten(exchange.reply);
  if (!words.ok()) {
    ReplyNotSent(c, words.status());
    return false;
  }
  c.pending = Connection::Pending{std::move(words).value(), std::move(exchange.reply_fds)};
  return Watch(c, false).ok();
}

bool ConnectionLoop::HasFdRoom() {
  const size_t reserve = kFdReserve + options_.max_request_fds;
  absl::StatusOr<size_t> free = FreeFdSlots(reserve);
  if (!free.ok()) {
    // Cannot happen short of a broken kernel; fail closed.
    log_.Line(absl::StrCat("cannot count free fds: ", free.status().ToString()));
    return false;
  }
  return *free >= reserve;
}

bool ConnectionLoop::Flush(Connection& c) {
  iovec iov{c.pending->words.begin(), c.pending->words.size() * sizeof(capnp::word)};
  std::vector<int> fds;
  for (const UniqueFd& fd : c.pending->fds) fds.push_back(fd.get());
  absl::StatusOr<bool> sent = wire::SendDatagram(c.fd.get(), &iov, 1, fds);
  if (!sent.ok()) {
    ReplyNotSent(c, sent.status());
    return false;
  }
  if (!*sent) return true;
  c.pending.reset();
  return Watch(c, false).ok();
}

absl::Status ConnectionLoop::Watch(Connection& c, bool add) {
  epoll_event event{};
  // Hang-ups and errors are reported whatever is asked for.
  event.events = c.pending ? EPOLLOUT : EPOLLIN;
  event.data.fd = c.fd.get();
  if (epoll_ctl(epoll_.get(), add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd.get(), &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(fd=", c.fd.get(), ")"));
  }
  return absl::OkStatus();
}

void ConnectionLoop::Close(int fd) {
  // Explicitly, though close() would do it: the description is ours alone.
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  auto held = connections_per_uid_.find(it->second->peer.uid);
  if (--held->second == 0) connections_per_uid_.erase(held);
  connections_.erase(it);
}


}  // namespace capbroker

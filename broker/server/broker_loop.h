// BrokerLoop: the broker's single-threaded, non-blocking event loop.
//
// One epoll set holds the listening socket, the control fd and every client
// connection. Each connection is served in turn, at most
// kDatagramsPerWakeup requests at a time, so a chatty client cannot starve
// the others. Replies go out at once; when a client's socket is full (its
// send buffer, kept small, holds at most 32 unread replies: see
// Limits::max_queued_fds_total) they wait in a per-connection queue bounded
// by Limits, and a client that lets the queue overflow (it sends but never
// reads) is disconnected: with grants in flight, its socket is shut down
// and kept, its place in its uid's count with it, until the client has
// read them or closed its end (see Disconnect). Nothing a
// client sends can stop the loop: every failure ends in an error reply or
// in closing that one connection.
//
// Fail closed on the audit log: every reply waits in a queue until the
// loop writes the audit lines of its turn, and a grant whose line could not
// be written is not sent: it is replaced by an `unavailable` error and its
// fds are closed, whether the line was lost while the grant waited in a
// queue or before it got there (a flush made while making room for it). A
// grant goes out only once it is on record. Nor does what a grant's open
// does to the file system stay without a record: a grant whose open
// truncates, or made the file, has its line written before it is queued,
// and the file is emptied only once the line is written, or the file made
// is removed again if it is lost (Settle).
//
// All connections' queues together are bounded too, in bytes and in the
// fds their replies hold (Limits::max_queued_bytes_total and
// max_queued_fds_total). When a reply would take them over, the loop first
// sends the replies queued this turn that no send has tried yet (every
// reply waits in its queue until the end of its turn, a client that reads
// everything included), then disconnects the connection holding the most
// of what is still over, which is the one asking when it holds the most.
// What is still queued then is what a full socket did not take: a client
// that reads its replies holds nothing, so the ones that go are those that
// do not read, never a well-behaved client that happens to ask, or to be
// answered, in the turn that fills the budget. If nobody holds anything
// and the reply still does not fit (which the flags' bounds rule out), it
// is refused with an error, and the connection kept.
//
// A hosted service's connection is different. The service's end of each
// new connection to it never waits in the broker: Deliver writes it to the
// service's socket at once, or the connect is refused ("busy"), before
// the client gets its own end. The broker so never holds a service's end
// while a client can send on the other: a service whose policy says
// acceptsFds takes fds from its clients, and a queued end closed with its
// connection (the service exits) would drop them in the loop's thread (see
// the last paragraph). A service's connection has a send buffer large
// enough for every connect that may wait for it to start
// (service::kMaxPendingConnects), which are all delivered at once when it
// is ready, after the reply to its `ready`, which its queue holds then
// and Deliver sends first (kServiceSendBufferBytes in broker_loop.cc). Service queues,
// which hold only replies to the service's own requests, stay out of the
// totals above, and a service is never disconnected to make room for
// others: the service host, which alone can restart it, would be left with
// a service nobody can reach. When the loop closes a service's connection
// on its own (the service hung up, sent what it may not, did not read its
// replies, or its socket failed), it tells the host
// (RequestHandler::ServiceConnectionLost). It tells the host too when any
// connection closes, a client's or a service's (a service may connect to
// another), however it ended and whoever closed it, so that the connects
// it left waiting for a service are withdrawn
// (RequestHandler::ClientConnectionClosed).
//
// A connection is closed at once but freed only between loop turns: the
// service host can close a connection (through Send) while that very
// connection's request is being answered, further up the stack.
//
// Out of fds (EMFILE/ENFILE): the loop keeps one reserve fd; when accept()
// fails for lack of fds it frees the reserve, accepts and closes the
// connection at once (the client is told why instead of hanging), and
// takes the reserve back. A level-triggered listener would otherwise spin.
// Any other accept() error (ENOMEM, ENOBUFS, a security module's EPERM)
// pauses the listener for 100 ms, for the same reason.
//
// A connection refused at admission (a peer whose uid or gid the broker's
// user namespace does not map, a quota, or no fd to accept it or to verify
// its peer) gets one error reply with id 0 saying why (naming the
// flag that sets the quota), then is closed: clients take it as the answer
// to their first call. Uid 0 and the broker's own uid may go
// kAdministratorReserve connections beyond max_connections, so that other
// uids holding them all cannot lock the administrator out. A refusal at
// max_connections tells the client the limit and that the broker is full;
// how many uids hold connections and which holds the most goes to the
// broker's stderr only: other users' uids and counts are not the client's
// to know (capctl status does not show them either).
//
// No fds from clients. The broker never takes one, and never holds one
// either, not even unread in a socket it closes: dropping the last
// reference to a file runs its release in the dropping thread, and a
// client can make that take as long as it likes (see wire::FdPolicy). Its
// sockets refuse fds (wire::RefuseFds: the listener, and every socketpair
// end it reads), so a client's sendmsg with fds fails. One kind of
// connection may still hold some: one made, to a socket from systemd
// whose unit does not say AcceptFileDescriptors=no, before the broker
// turned fd-passing off on it (while no broker ran: a connection takes
// the option when it is made). The loop looks at each datagram of such a
// connection before reading it (wire::PeekDatagram, which drops nothing),
// and when one carries fds, or when the connection ends with anything
// unread, it keeps the socket open, unread, out of the epoll set, until
// the broker exits: closing it would drop what it holds in the loop's
// thread. Only connections made before the broker started can be kept so:
// at most the listener's backlog (systemd's Backlog=), once per start.
// A client's end of a new connection to a service is the one socket a peer
// of the broker can send fds into while the broker holds it: it waits in
// the client's queue like any reply, after the service has its end (see
// Deliver), and is closed with that queue if the client's connection goes
// first. A service is confined, and handing fds to its clients is what it
// is for; one that sends a file whose release blocks, to a client that
// stops reading and hangs up, could stall the loop that way.
#ifndef CAPBROKER_BROKER_SERVER_BROKER_LOOP_H_
#define CAPBROKER_BROKER_SERVER_BROKER_LOOP_H_

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "broker/audit/audit_log.h"
#include "broker/peer/unmapped_ids.h"
#include "broker/server/dispatch.h"
#include "sdk/base/log_limiter.h"
#include "broker/server/loop_port.h"
#include "broker/server/request_handler.h"
#include "broker/server/stats.h"
#include "capnp/message.h"
#include "kj/array.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/datagram.h"

namespace capbroker::server {

// Connections beyond Limits::max_connections that only uid 0 and the
// broker's own euid may open, each still within its uid's
// max_connections_per_uid. The quotas are per kernel uid, and a user with
// a subordinate uid range (/etc/subuid: 65536 uids each by Debian's
// defaults, for rootless containers) counts as that many uids: a few of
// them, or that one user alone, can hold every connection the broker
// serves. The administrator can then still connect (to run `capctl
// status`, or a client of its own), and the refusal lines on stderr say
// which uid holds the most. Small: room for a few `capctl` at once. The
// daemon's fd sizing (RaiseFdLimit) counts what one uid can make the
// broker hold, which the reserve does not change: it lets these uids past
// the total only, never past their own max_connections_per_uid.
inline constexpr size_t kAdministratorReserve = 16;

// Quotas, passed in at construction.
struct Limits {
  size_t max_connections = 16384;
  size_t max_connections_per_uid = 4096;
  size_t max_queued_replies = 32;           // per connection
  size_t max_queued_bytes = 256 * 1024;     // per connection
  // Queued reply bytes of all connections together. The per-connection
  // bounds alone let one uid hold 4096 connections x 256 KiB = 1 GiB of
  // replies it never reads. Every reply passes through a queue, if only
  // until the end of its loop turn (at most 64 replies of at most 64 KiB),
  // so this must stay well above 4 MiB to cost busy clients nothing.
  size_t max_queued_bytes_total = 64 * 1024 * 1024;
  // Fds held by queued replies of all connections together: fresh opens and
  // connection ends (a shared capability's one fd is not counted). Without
  // this bound, one uid's connections could hold 4096 x 32 fds in the
  // broker and run it out of fds for everyone.
  //
  // It bounds the queues only, not what clients hold. A reply leaves the
  // queue when the client's socket takes it, normally within its loop turn;
  // its fds (open files the broker made) are then in flight, held by that
  // socket until the client reads them, and for as long as the client keeps
  // the socket, even after the broker has disconnected it. The kernel
  // counts them against no limit of the client's (a root sender is exempt
  // from the limit on fds in flight), so the broker bounds them itself: a
  // client's connection has a small send buffer (kClientSendBufferBytes in
  // broker_loop.cc) that takes at most 32 replies the client has not read;
  // the rest queue here, and a connection with max_queued_replies queued
  // is disconnected. A connection disconnected with fds in flight keeps its
  // place in its uid's count until the client has read them or closed it
  // (see Disconnect). Per uid that is at most max_connections_per_uid x 32
  // grants' fds held unread in clients' sockets, and max_queued_replies
  // more per connection queued here, within this total.
  size_t max_queued_fds_total = 4096;
};

class BrokerLoop : public LoopPort {
 public:
  // Borrows its arguments; they must outlive the loop. `unmapped_ids`:
  // the ids no peer in particular has in the broker's user namespace
  // (peer::ReadUnmappedIds, read at start); a peer with one is refused at
  // admission. The default, none, is the initial user namespace's.
  BrokerLoop(RequestHandler& handler, audit::AuditLog& audit, Stats& stats,
             Limits limits, peer::UnmappedIds unmapped_ids = {});
  ~BrokerLoop() override;

  // Whether the loop could be made, checked before the broker says it is
  // ready (Serve returns it too): its epoll fd, and its reserve fd, an open
  // of /dev/null that it frees to refuse a connection when out of fds (see
  // the class comment). A broker that cannot open it (systemd's
  // InaccessiblePaths=/dev/null, a bare /dev) would stop accepting at the
  // first EMFILE, waiting for a reserve it can never take: it does not
  // start (kFailedPrecondition, naming the path and errno), where a missing
  // /dev/null is noticed at once. Taken out by a connection set aside
  // (Discard), the reserve is taken back once an fd is free.
  absl::Status Usable() const;

  // LoopPort, for the service host. Service connections count in the
  // connection total but not against any uid's quota: the broker made them.
  absl::Status Watch(int fd, std::function<void()> on_readable) override;
  void Unwatch(int fd) override;
  absl::StatusOr<uint64_t> AddServiceConnection(UniqueFd fd, Identity identity) override;
  bool Send(uint64_t id, Answer answer) override;
  bool Deliver(uint64_t id, Answer answer) override;
  void CloseConnection(uint64_t id) override;
  bool IsOpen(uint64_t id) const override;
  std::vector<uint64_t> AuditLinesLost(const std::vector<uint64_t>& lines) override;

  // Serves clients of `listener` (a listening SEQPACKET socket, borrowed).
  // When `control_fd` (borrowed; the daemon's signalfd) becomes readable,
  // calls `on_control`, and stops when it returns true, after sending the
  // replies of that turn (their audit lines first). Returns an error
  // only when the loop itself cannot go on (epoll failing), or, at the end
  // of the turn that found it (a stop's turn included), when the audit log
  // can never be written again (AuditLog::reader_gone: kUnavailable,
  // saying so).
  absl::Status Serve(int listener, int control_fd,
                     const std::function<bool()>& on_control);

  // For the broker's stop, after Serve has returned and the service host
  // has answered the connects that waited (ServiceHost::StopAll): writes
  // the audit log, then sends what every connection's queue holds, as far
  // as each socket takes it now (a grant whose line was lost is withheld,
  // as always). Never waits: what a socket does not take is dropped with
  // the loop.
  void SendWhatIsQueued();

  // For the broker's stop, after SendWhatIsQueued: logs the count of lines
  // about clients suppressed since the last one logged (see PeerLog),
  // which no later line will report.
  void LogSuppressedPeerLines();

 private:
  struct QueuedReply {
    kj::Array<capnp::word> words;
    std::vector<UniqueFd> fds;
    std::shared_ptr<const UniqueFd> shared_fd;  // sent after `fds`; may be null
    uint64_t id = 0;          // the request's id
    uint64_t audit_line = 0;  // a grant's audit line; 0 for other replies
    std::string principal;    // a grant on record: see Outcome::principal
    audit::OpenOptions open;  // its request's: see Outcome::open
  };
  struct Connection {
    UniqueFd fd;
    uint64_t id = 0;            // never reused, unlike fd numbers
    bool service = false;       // made by the broker for a hosted service
    Session session;
    std::vector<QueuedReply> queue;
    size_t queued_bytes = 0;
    size_t queued_fds = 0;      // fds held by `queue` (shared fds not counted)
    // Closed: served no more, gone from fd_by_id_; freed by Reap() between
    // turns once released (see Release). Until then, a disconnected one.
    bool closed = false;
    // Closed while replies with fds were in flight to it: its fd stays
    // open, and its place in its uid's count, until they are read or
    // dropped (see Disconnect).
    bool disconnected = false;
    // Whether a reply with fds was ever sent to it.
    bool sent_fds = false;
    bool close_when_flushed = false;
    bool pending_send = false;  // listed in pending_sends_
    uint32_t events = 0;        // the epoll events registered for fd
    // The socket's send buffer as the kernel counts it (SO_SNDBUF).
    size_t send_buffer = 0;
    // Made before its listener refused fds, and not yet seen empty: what
    // waits in it may carry fds (see the class comment).
    bool fds_may_wait = false;
    // Why the broker is closing it, set where that is decided (a static
    // phrase, for the not-delivered lines of its waiting connects); empty:
    // the peer hung up (or its socket failed as it did).
    absl::string_view closing_for;
  };

  // Accepts waiting connections, at most kAcceptsPerWakeup of them.
  void Accept(int listener);
  // After an accept4 error that lasts (`accept_errno`: ENOMEM, ENOBUFS, a
  // security module's EPERM), whichever of Accept's calls met it: takes the
  // listener out of the epoll set, where level-triggered it would wake
  // every turn at full CPU, for kPausedListenerRetryMs (Serve resumes it).
  void PauseListener(int listener, int accept_errno);
  // Adds the listener to the epoll set, or takes it out (paused).
  absl::Status WatchListener(int listener, bool watch);
  // Admits the connection `fd`, or refuses it (see Refuse) when its peer
  // cannot be identified or a connection quota is reached.
  void Admit(UniqueFd fd);
  // Tells the peer of `fd` (borrowed), a connection about to be closed
  // unserved, why: one error reply with id 0.
  void Refuse(int fd, const absl::Status& why);
  // Adds `fd` to the epoll set and the connection table. `send_buffer`:
  // the socket's SO_SNDBUF as SetSendBuffer set it.
  // `fds_may_wait`: see Connection. Takes `fd` only when it succeeds.
  absl::StatusOr<uint64_t> Register(UniqueFd&& fd, Identity identity, bool service,
                                    size_t send_buffer = 0, bool fds_may_wait = false);
  // Whether the new connection `fd` (borrowed; -1: none) may hold fds sent
  // before its listener refused them (see the class comment); if so, it
  // refuses them from now on. Turns its credential messages off either way.
  bool FdsMayWait(int fd);
  // Closes a connection that is not (or no longer) served; one that may
  // hold fds (`fds_may_wait`) and may have anything unread is kept open,
  // unread and unwatched, in set_aside_ instead.
  void Discard(UniqueFd fd, bool fds_may_wait);
  // For a connection that may hold fds: whether its next datagram carries
  // none and may be read. Clears fds_may_wait when nothing waits.
  bool MayRead(Connection& connection);
  // Sets the send buffer of connection `fd` (borrowed) to `bytes` as the
  // kernel counts them (see kClientSendBufferBytes and
  // kServiceSendBufferBytes in broker_loop.cc); returns the size the kernel
  // gave it.
  static absl::StatusOr<size_t> SetSendBuffer(int fd, int bytes);
  // Sends one datagram larger than the connection's send buffer, which
  // sendmsg would refuse (EMSGSIZE): false, sending nothing, while the
  // usual buffer's worth is in flight already.
  absl::StatusOr<bool> SendWide(Connection& connection, const iovec& iov,
                                absl::Span<const int> fds);
  void OnReadable(Connection& connection);
  // Writes the batch's audit lines, then sends every queued reply of the
  // connections that got new ones this turn.
  void SendPending();
  // Writes the pending audit lines, and withholds every queued grant whose
  // line could not be written (fail closed). Called before any reply is sent.
  // Returns the lines lost, and adds them to lost_this_turn_.
  std::vector<audit::AuditLog::LineRange> FlushAudit();
  // Whether audit line `line` was lost by a flush of this loop turn.
  bool LostThisTurn(uint64_t line) const;
  // Sends what the connection's queue holds, as far as the socket takes it.
  void SendQueued(Connection& connection);
  // Sends `reply` on the connection's socket: false when the socket is
  // full, an error when it failed (the caller closes the connection).
  absl::StatusOr<bool> Write(Connection& connection, QueuedReply& reply);
  // Handles one received datagram (or receive error). Returns false when
  // the connection must be closed.
  bool OnDatagram(Connection& connection);
  // Settles a grant whose open left something to do (Outcome::effects: a
  // truncate, a file it made) before it is queued: writes its audit line
  // now (one write(2) for such a grant, instead of one per turn), then
  // empties the file (caps::OpenEffects::Complete) if the line is on
  // record, or removes the file the open made and withholds the grant if
  // it is not. A grant not on record leaves nothing behind, and no file is
  // emptied for it. A file that cannot be emptied makes the grant an
  // error, on record as not delivered.
  void Settle(const Connection& connection, Answer& answer);
  // Queues a reply for SendPending. Returns false when the connection must
  // be closed (its queue is over the limits), or is closed already; the
  // answer and its fds are then dropped.
  bool Queue(Connection& connection, Answer answer);
  // Whether one more reply of `bytes` fits in the connection's own queue.
  bool Fits(const Connection& connection, size_t bytes) const;
  // The same, after sending what the socket takes of the queue when it
  // does not fit. False also when sending closed the connection.
  bool MakeFit(Connection& connection, size_t bytes);
  // Adds `bytes` and `fds` (negative: removes) to what the connection's
  // queue holds, and, for a client, to the totals.
  void Account(Connection& connection, long bytes, long fds);
  // Registers the epoll events the connection's state calls for. Returns
  // false, after logging why, when epoll_ctl fails: the caller closes the
  // connection, since epoll would go on reporting the wrong events for it.
  bool UpdateEvents(Connection& connection);
  // What MakeRoom did.
  enum class Room {
    kMade,           // the reply fits in the totals now
    kRequesterGoes,  // `requester` holds the most, or closed: the caller closes it
    kNone,           // nobody holds anything, and still the reply does not fit
  };
  // Makes room for `bytes` more queued bytes and `fds` more queued fds
  // within the totals: first by sending the replies queued this turn that
  // no send has tried yet (SendUntried), then by disconnecting the
  // connections holding the most of what a full socket left queued.
  Room MakeRoom(Connection& requester, size_t bytes, size_t fds);
  // Sends what the clients' queues that got replies this turn hold, as far
  // as their sockets take it.
  void SendUntried();
  // Closes `connection`: its queued replies and their fds go now, and so,
  // unless it is disconnected (see Disconnect), do its socket and its
  // place in the counts (Release); the Connection itself, which callers up
  // the stack may still hold, stays until Reap(). Does nothing to a
  // connection closed already. A service's connection closed
  // by the loop on its own is reported to the host as lost (`tell_host`);
  // not one the host itself closes. Every connection that closes, a
  // client's or a service's (a service connects to others too), is
  // reported as gone, so that its waiting connects are withdrawn, with why
  // (`closing_for`).
  void Close(Connection& connection, bool tell_host = true);
  // Whether replies with fds sent to `connection` (a closed one's too) may
  // still be in flight: in its socket, unread by its peer, which has not
  // closed its end.
  bool HoldsRepliesInFlight(const Connection& connection);
  // For Close, a client's connection only: when replies with fds may be in
  // flight to it, keeps it, disconnected, instead of releasing it, and
  // returns true. Its replies' fds are open files the broker made, which
  // the client's socket holds as long as it is open, counted against no
  // limit of the client's (a root broker is exempt from the kernel's limit
  // on fds in flight; a user's broker would find its own limit reached,
  // for every client). Released at once, the connection's place would go
  // to a new one, and a client keeping each old socket would hold more
  // with every connection it makes. So it keeps its place in its uid's
  // count (and in the total) until its peer has read or dropped them
  // (closed its end): the broker shuts the socket down (the client reads
  // what is in flight, then end of stream; its sends fail with EPIPE),
  // reads nothing more from it, and Serve releases it on the first event
  // that finds nothing in flight.
  bool Disconnect(Connection& connection);
  // Closes the socket of a closed `connection` (or sets it aside: see
  // Discard), and frees its place in the counts.
  void Release(Connection& connection);
  // Closes `connection` after a send to it failed with `failed`.
  void CloseAfterWrite(Connection& connection, const absl::Status& failed);
  // Frees the connections closed since the last call. Only between turns.
  void Reap();
  // Puts on record that `reply`, a reply to `connection` the loop drops
  // unsent, was not delivered, if it is a grant on record (`principal`
  // set; `open` its Outcome::open): RequestHandler::GrantNotDelivered,
  // with `why`, by default why the connection is closing.
  void NotDelivered(const Connection& connection, kj::ArrayPtr<const capnp::word> reply,
                    const std::string& principal, const audit::OpenOptions& open,
                    absl::string_view why = {});
  // The error that replaces a grant whose audit line was lost; counts it
  // as a denial instead of a grant.
  Answer Withheld(uint64_t request_id);
  // How many uids hold client connections, and which holds the most, for
  // the stderr line about a refusal at max_connections (never the reply).
  std::string Holders();
  // Logs a line a client could provoke, within kPeerLogLinesPerSecond.
  void PeerLog(absl::string_view line);
  // Logs "(N similar lines suppressed)" unless `count` is 0.
  static void LogSuppressed(uint64_t count);

  LogLimiter peer_log_;
  RequestHandler& handler_;
  audit::AuditLog& audit_;
  Stats& stats_;
  Limits limits_;
  peer::UnmappedIds unmapped_ids_;
  // Besides uid 0, the uid that may use kAdministratorReserve: the broker's.
  uint32_t own_euid_;
  UniqueFd epoll_;
  UniqueFd reserve_fd_;
  // Why the loop cannot serve (see Usable); OK when it can.
  absl::Status unusable_;
  // Out of the epoll set: the table was full with no reserve, or accept
  // failed otherwise (see Accept).
  bool listener_paused_ = false;
  // A listener paused by an accept error is not watched again before this.
  std::chrono::steady_clock::time_point listener_resume_at_;
  // Indexed by fd: fds are small dense integers.
  std::vector<std::unique_ptr<Connection>> connections_;
  absl::flat_hash_map<uint64_t, int> fd_by_id_;
  uint64_t next_id_ = 1;
  absl::flat_hash_map<int, std::function<void()>> watches_;
  // Client connections by uid: every one not released (`held`), among them
  // the disconnected ones (see Disconnect).
  struct UidConnections {
    size_t held = 0;
    size_t disconnected = 0;
  };
  absl::flat_hash_map<uint32_t, UidConnections> connections_per_uid_;
  // The uid holding the most client connections, as counted at `counted`.
  // A refusal at max_connections names it, and such refusals come in
  // floods: connections_per_uid_ (up to one entry per connection) is
  // counted again at most once a second (kTopHolderRecountInterval).
  struct TopHolder {
    uint32_t uid = 0;
    size_t count = 0;
    absl::Time counted = absl::InfinitePast();
  };
  TopHolder top_holder_;
  size_t queued_bytes_total_ = 0;  // the sum of every connection's queued_bytes
  size_t queued_fds_total_ = 0;    // the sum of every connection's queued_fds
  std::vector<std::unique_ptr<Connection>> closed_;  // for Reap()
  // Connections that may hold clients' fds, kept open and unread until the
  // broker exits (see Discard).
  std::vector<UniqueFd> set_aside_;
  std::vector<int> pending_sends_;  // fds with replies queued this turn
  // The audit lines FlushAudit lost in this loop turn. A flush can come
  // between an answer's Record and its Queue (Queue makes room by sending,
  // and a send flushes first), when the answer is in no queue for FlushAudit
  // to withhold: Queue checks it against these. Every answer is recorded and
  // queued within one turn (a deferred connect is checked at once with
  // AuditLinesLost), so the list is cleared between turns; it is empty unless
  // the log failed.
  std::vector<audit::AuditLog::LineRange> lost_this_turn_;
  wire::ReceiveBuffer receive_buffer_;
  // Zeroed first segment for reply builders (MallocMessageBuilder zeroes
  // what it used when it is destroyed, so it can be reused).
  kj::Array<capnp::word> scratch_;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_BROKER_LOOP_H_

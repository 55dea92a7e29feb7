// ConnectionLoop: the single-threaded event loop of a hosted service.
//
//   class Echo : public RequestHandler {
//     absl::Status Handle(Exchange& x) override {
//       ... read x.request under CatchKj, fill x.reply ...
//       return absl::OkStatus();
//     }
//   };
//   Echo echo;
//   service->Ready();
//   ConnectionLoop loop(service->broker(), echo);
//   return loop.Run();   // returns when the broker closes the connection
//
// The loop watches the broker connection for the connections the broker
// makes for clients (TryAccept) and every client connection for requests.
// The protocol on a client connection is request/reply: one Cap'n Proto
// message per SEQPACKET datagram, fds in SCM_RIGHTS, every wire limit of
// sdk/wire/limits.h enforced before the handler sees anything. A
// connection's requests are answered one at a time, in order: the next one
// is read only once the reply to the previous one has been sent, so a
// client that does not read its replies stalls only itself, and the loop
// holds at most one reply per connection.
//
// What a client can cause: a datagram that is not a well-framed message, or
// that the handler cannot read, closes that client's connection (a
// malformed datagram leaves nothing to reply to), and so does a socket that
// refuses the fds of its reply; the loop serves on. A reply the loop cannot
// send for a reason of the service's (too large, more fds than a datagram
// carries) closes the connection too, and is logged.
// Nothing a client sends ends the loop. Limits, all from Options: a new
// connection beyond max_connections, or beyond max_connections_per_uid for
// its uid, gets the handler's refusal reply (SetRefusal, kResourceExhausted:
// the client reads why as the reply to its first request; sent without
// blocking) and is closed at once; a request with more fds than
// max_request_fds is answered by the handler's SetRefusal and never reaches
// Handle. The fd table bounds max_connections (see Options), and fds that
// stay in it across turns are watched too: while fewer than a reserve
// (fd_room.h) are free, because the handler kept fds or replies with fds
// wait for clients that do not read, a new connection is refused likewise,
// and a reply with fds that would have to wait closes its connection.
//
// A loop can also serve one connection without a broker (the second
// constructor): what a worker process of a ForkingServer (forking_server.h)
// runs for its one client. Such a loop does not log that it closed the
// connection for what the client sent, nor for a reply it could not send
// (see client_fault()).
//
// Ownership: the loop owns every client connection and every fd received
// with a request; whatever the handler leaves in Exchange::request_fds is
// closed after it returns, and every connection is closed when the loop is
// destroyed. The broker connection stays the Client's. By default
// (max_request_fds = 0) requests carry no fds, and the connection refuses
// them (see Options); a protocol that takes fds says how many.
//
// Not thread-safe. Handlers run on the loop's thread and block it while
// they run: keep them short or bounded.
#ifndef CAPBROKER_SDK_SERVICE_CONNECTION_LOOP_H_
#define CAPBROKER_SDK_SERVICE_CONNECTION_LOOP_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "capnp/message.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "sdk/service/rate_limited_log.h"
#include "sdk/wire/datagram.h"

namespace capbroker {

// Who is on the other end of a client connection, as the broker
// established it: never what the client says about itself.
struct Peer {
  std::string principal;  // the policy principal (or service) that allowed it
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;        // in the broker's pid namespace; 0 for a service
};

// The Peer of `incoming`.
Peer PeerOf(const IncomingConnection& incoming);

// `peer` as the service's log lines name it: "principal 'alice' (uid 1000,
// pid 42)". The principal is Shown (sdk/base/shown_text.h): the Client
// takes none from the broker that is not a policy's name, but a log line
// does not depend on that: a broker's text never reaches stderr raw.
std::string DescribePeer(const Peer& peer);

// One request and its reply.
struct Exchange {
  explicit Exchange(const Peer& p, capnp::MessageReader& r) : peer(p), request(r) {}

  const Peer& peer;
  // The request, read under CatchKj: reading a field of a malformed
  // message throws.
  capnp::MessageReader& request;
  // The fds that came with the request, close-on-exec. Move out those the
  // handler keeps; the rest are closed after it returns.
  std::vector<UniqueFd> request_fds;
  // The reply the loop sends when the handler returns OK; its root must be
  // set. Sent with `reply_fds`, which the loop holds until then.
  capnp::MallocMessageBuilder reply{256};
  std::vector<UniqueFd> reply_fds;
};

// What a service does with a request.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;

  // Fills exchange.reply. A request of the protocol that cannot be granted
  // (bad arguments, a wrong fd count, a limit) is answered with an error
  // reply and OK here. Return an error only when there is nothing to answer:
  // the request is not a message of this protocol (a kj exception while
  // reading it). The loop then closes the connection, and logs the status;
  // a loop serving one connection (a ForkingServer worker) logs nothing
  // and keeps it in client_fault() instead: the worker's exit code tells
  // the main process the kind (ClientFault), which it logs.
  virtual absl::Status Handle(Exchange& exchange) = 0;

  // Fills `reply` with this protocol's error reply saying `refusal`, and
  // returns true; false (the default) for a protocol without error replies.
  // Used for what is refused before Handle would see it: a request that
  // carried more fds than ConnectionLoop::Options::max_request_fds
  // (kInvalidArgument), and a connection a ConnectionLoop or ForkingServer
  // does not serve, at one of their limits (kResourceExhausted). Without
  // such a reply, the connection is closed.
  virtual bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) {
    return false;
  }
};

// Sends `handler`'s refusal reply saying `reason` on `connection`
// (borrowed), a connection refused before it is served, which it makes
// non-blocking: a reply that finds no room is dropped, never waited for.
// OK when the protocol has no refusal reply (nothing is sent); kUnavailable
// when the client is gone.
absl::Status SendRefusal(int connection, RequestHandler& handler, const absl::Status& reason);

// What a client sent that made a loop close its connection, or a reply it
// could not send: what a loop serving one connection (a ForkingServer
// worker) says by its exit code rather than a log line.
enum class ClientFault {
  kNone,
  // A datagram that is not a well-framed message (segment table, words).
  kNotAMessage,
  // A request with fds the service takes none of, or more than it takes,
  // refused by a protocol without a refusal reply.
  kFds,
  // A datagram that could not be received whole (larger than the wire
  // allows, its fds cut short), or an error receiving it.
  kReceive,
  // A request the handler could not read: it returned an error or threw.
  kHandler,
  // A socket that refuses fds (SO_PASSRIGHTS off, wire::RefuseFds) while
  // the reply to its request carries some: the reply could not be sent.
  kRefusesReplyFds,
  // A reply that could not be sent for another reason (a client gone is
  // none): too large or with more fds than a datagram carries (the
  // service's bug), or an error of the kernel's, which a client can cause
  // (ETOOMANYREFS: the fds in flight from the service's uid, in replies
  // its clients do not read, over its RLIMIT_NOFILE).
  kReplyNotSent,
};

class ConnectionLoop {
 public:
  struct Options {
    // Client connections open at once; further ones are refused (told why,
    // see SetRefusal) and closed on arrival.
    // Lowered when the loop starts to what RLIMIT_NOFILE leaves room for
    // (the fds open then and a reserve, fd_room.h, taken off), which is
    // logged: at the limit, the fd of a new connection could not be
    // received, and the Client would drop it, its client told nothing.
    size_t max_connections = 256;
    // Client connections one uid may hold open at once, so that one client
    // cannot take all max_connections and lock every other one out;
    // further ones from that uid are refused (told why) and closed on
    // arrival. Every principal of a uid shares its count.
    size_t max_connections_per_uid = 16;
    // The fds one request may carry; a request with more is refused
    // (RequestHandler::SetRefusal). 0, the default: requests carry none,
    // and the service must never hold a client's fd, not even to drop it:
    // dropping the last reference to a file runs its release in the
    // dropping thread, and a client can make that last as long as it likes
    // (a socket lingering on close, a FUSE file whose server, which a
    // client can run itself, never answers the FLUSH of close()), stalling
    // the loop and every client. So the connection refuses fds at the
    // socket (wire::RefuseFds, Linux 6.16): the client's sendmsg fails
    // (EPERM) and nothing is queued. The broker does that to the service's
    // end before the client has its own, unless the service's policy says
    // acceptsFds; Add does it again for connections made otherwise. Fds
    // that arrive all the same (a kernel without SO_PASSRIGHTS, or sent
    // before Add on a connection the broker did not make) are received
    // without room for them (wire::FdPolicy::kRefuse), never installed, and
    // the request is refused; their release may then still run here. A
    // protocol whose requests carry fds raises this to the most one
    // request takes (the scanner: 1, with acceptsFds in its policy), and
    // then closes what it receives: serve such requests in a worker process
    // (ForkingServer) when a stalled close must stall only one client.
    size_t max_request_fds = 0;
    // Lines the loop logs to stderr per second (closed connections,
    // refusals); a client must not be able to flood the service's log.
    int max_log_lines_per_second = 20;
  };

  // Borrows `broker` (the service's broker connection, on which Ready()
  // has been said) and `handler`; both must outlive the loop. Handlers may
  // make requests on `broker` (an Acquire or OpenBeneath per request, say):
  // the events that arrive meanwhile wait in the Client's queue, which the
  // broker fd no longer shows, and the next turn takes them before it
  // waits. The loop serves no one while such a call waits for its reply
  // (bound it with ClientOptions::timeout). Connections the Client dropped
  // during a call (made before the loop ran, or by a handler), their fds
  // beyond the fd table, are logged as the loop takes connections
  // (fd_room.h).
  ConnectionLoop(Client& broker, RequestHandler& handler, Options options);
  ConnectionLoop(Client& broker, RequestHandler& handler)
      : ConnectionLoop(broker, handler, Options()) {}
  // Serves `connection` alone, with no broker: Run returns OK once it has
  // closed (the client hung up, or was closed for what it sent).
  ConnectionLoop(IncomingConnection connection, RequestHandler& handler, Options options);
  ~ConnectionLoop();

  ConnectionLoop(const ConnectionLoop&) = delete;
  ConnectionLoop& operator=(const ConnectionLoop&) = delete;

  // Serves until the broker closes the service's connection (or, serving
  // one connection, until that closes): OK then (the service should exit).
  // An error when the loop itself cannot go on (epoll fails, the broker
  // sends something that is not an event).
  absl::Status Run();

  // One turn of Run: takes the connections the Client has queued, then
  // waits up to `timeout_ms` (-1: without limit; not at all when it took
  // one) for events and handles those that are ready. false once the
  // broker has closed the connection (serving one connection: once that
  // has closed). For tests, which step the loop between their own sends
  // and receives.
  absl::StatusOr<bool> Turn(int timeout_ms = -1);

  // Client connections open now.
  size_t connection_count() const { return connections_.size(); }

  // Serving one connection: why the loop closed it for what its client
  // sent (a datagram that is not a request, or that the handler could not
  // read, or a socket that refuses its reply's fds) or for a reply it could
  // not send; OK if it did not (the client hung up). In that mode the loop
  // does not log it: its caller says it (a ForkingServer worker, through
  // its exit code, to the main process, which logs it within its budget).
  const absl::Status& client_fault() const { return client_fault_; }
  // Its kind; kNone if the loop did not close it for either.
  ClientFault client_fault_kind() const { return client_fault_kind_; }

 private:
  struct Connection;

  absl::Status Init();
  // Takes every connection waiting on the broker connection; false when the
  // broker is gone.
  absl::StatusOr<bool> AcceptAll();
  void Add(IncomingConnection incoming);
  // Sends the handler's refusal reply saying `reason` to `incoming`, which
  // the caller then closes.
  void Refuse(const IncomingConnection& incoming, const absl::Status& reason);
  // Reads and answers one request; false when the connection must close.
  bool Serve(Connection& c);
  // Sends the reply of `exchange`, or keeps it while the socket is full;
  // false when the connection must close.
  bool Reply(Connection& c, Exchange& exchange);
  // Whether the fd table has its reserve free (kFdReserve and the fds of
  // a request, fd_room.h) for the broker's next `incoming`: checked before
  // a connection is taken, or a reply's fds held, beyond the count Init
  // made, which fds that stay across turns escape. Scans the table from 0
  // and stops at the reserve: cheap.
  bool HasFdRoom();
  // Sends the pending reply of `c`; false when the connection must close.
  bool Flush(Connection& c);
  // Says why the reply to `c` could not be sent, `why`, before its
  // connection closes: nothing for a client that is gone (kUnavailable);
  // a client fault (ClosedForTheClient) for one whose socket refuses the
  // reply's fds (kPermissionDenied); otherwise a log line naming the peer,
  // or, serving one connection, client_fault_ (kReplyNotSent).
  void ReplyNotSent(const Connection& c, const absl::Status& why);
  // Watches `c` for requests, or, while a reply waits, for room to send it.
  absl::Status Watch(Connection& c, bool add);
  void Close(int fd);
  // Says that `c` is closed for what its client sent, `why`, of `kind`: a
  // log line, or, serving one connection, client_fault_ and its kind.
  void ClosedForTheClient(const Connection& c, ClientFault kind, const absl::Status& why);
  // Serving one connection, keeps `why` and `kind` as client_fault_ and its
  // kind, for the worker's exit code, and returns true; false otherwise.
  bool KeptForTheExit(ClientFault kind, const absl::Status& why);

  Client* broker_;  // null when serving `single_` alone
  std::optional<IncomingConnection> single_;  // until the first turn adds it
  RequestHandler& handler_;
  const Options options_;
  // options_.max_connections, or what the fd table has room for.
  size_t max_connections_;
  UniqueFd epoll_;
  bool started_ = false;
  bool refusing_ = false;  // at max_connections, said once per episode
  std::unordered_map<int, std::unique_ptr<Connection>> connections_;
  // Open connections by uid; a uid with none has no entry.
  std::unordered_map<uint32_t, size_t> connections_per_uid_;
  std::unique_ptr<wire::ReceiveBuffer> buffer_;  // one for all connections
  // Client::dropped_incoming when last logged (DroppedIncomingLine).
  uint64_t dropped_seen_ = 0;
  RateLimitedLog log_;
  absl::Status client_fault_;
  ClientFault client_fault_kind_ = ClientFault::kNone;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_CONNECTION_LOOP_H_

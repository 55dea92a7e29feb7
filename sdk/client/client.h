// Client: the C++ API for asking capbrokerd for capabilities.
//
//   absl::StatusOr<Client> client = Client::Connect();   // default socket
//   absl::StatusOr<Capability> motd = client->Acquire("motd");
//   read(motd->fd.get(), ...);
//
// Errors are absl::Status values whose code tells what happened
// (kPermissionDenied: the policy does not grant it; kNotFound: no such
// capability or file; kInvalidArgument: a malformed request; kUnavailable:
// no broker or the connection broke; kResourceExhausted: a limit;
// kDeadlineExceeded: no answer within the client's timeout; kInternal: a
// broken broker reply, a protocol error, below) and whose message is the
// broker's reason, naming the policy rule.
//
// A call waits for its reply as long as it takes, unless the Client has a
// timeout (ClientOptions): a broker whose only thread is stuck (on a
// capability on a hung FUSE or NFS mount, say) answers nobody meanwhile,
// and something else at the socket's path may never answer. No timeout is
// the default, since some answers take long by design: a ConnectService
// waits for its service to start (up to its policy's startTimeoutMs,
// which may be 10 minutes, after a restart delay of up to 30 s).
//
// A Client is one connection, with at most one request outstanding.
// Requests are answered in order; the client checks that every reply echoes
// its request's id and that every message lists the fds its datagram
// carried. A broker message that breaks these rules once a request is sent
// (a reply to another request, a datagram larger than the wire allows, empty,
// or one Cap'n Proto cannot read, fds that do not match their list, fds on
// an error or on a reply that carries none: only a grant does; an
// `incoming` event to a client that has not said Ready(), or one whose
// principal is not a policy's name: wire::IsPolicyName) is a protocol
// error: the call fails with kInternal, whichever layer found it, and the
// message "broken broker reply: " and the reason (the caller's request was
// not what was wrong, and asking again on this connection cannot help); the
// client closes the connection (and every fd that came on it), and every
// later call fails with kUnavailable naming that first error, so that no
// reply is ever taken for another request's answer. A request refused
// before it is sent (a name or path longer than the wire allows, say)
// leaves the connection as it was.
//
// Fds that did not all fit in this process's fd table (at RLIMIT_NOFILE
// the kernel closes those it cannot install, the last ones of a message,
// and says so: wire::FdPolicy::kAcceptWhatFits) are no protocol error: the
// message itself was read whole. A reply whose fds did not fit fails its
// call with kResourceExhausted, saying so, the fds that came closed; an
// `incoming` event whose fd did not fit is dropped and counted
// (dropped_incoming()): the kernel closed the service's end, so its client
// sees end of stream. The connection stays in step either way.
//
// An error with id 0 is the broker's answer to a request it could not read
// (it cannot trust that request's id), or its reason for refusing the
// connection (a quota, with the flag that sets it): it answers the call
// outstanding, even when the broker hung up before the request went out.
// Other unasked (id 0) messages of kinds this client does not know are
// skipped, their fds closed. Not thread-safe: use one Client per thread, or
// lock around it.
//
// A grant must answer its request, or it is a protocol error (the fd is
// closed with the connection): its entry names what was asked for
// (Acquire: the capability; OpenBeneath: the directory capability, with
// `path` the path asked for; ConnectService: the service, of kind
// connection, which no other grant is) and has the access asked for (the
// broker grants exactly that; for `unspecified`, any access the schema
// knows but unspecified). These checks read the message only. The SDK does
// not fstat or fcntl the fd to compare its type or open mode with the
// entry: that would cost system calls on every grant, and the broker
// reached at the configured socket is the authority on what it hands out
// (README: the broker refuses a socket directory others could write, so no
// one else can bind a socket there).
#ifndef CAPBROKER_SDK_CLIENT_CLIENT_H_
#define CAPBROKER_SDK_CLIENT_CLIENT_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/capability.h"
#include "sdk/wire/channel.h"

namespace capbroker {

// Who the broker says we are, from the hello exchange.
struct PeerInfo {
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;
  std::string exe;
  // The policy principals we match: the first few the broker names (8),
  // in policy order, and how many more match.
  std::vector<std::string> principals;
  uint32_t more_principals = 0;
};

// An entry of List(): a capability the caller may request.
struct CapabilityInfo {
  std::string name;
  schema::Kind kind = schema::Kind::FILE;
  schema::Access access = schema::Access::UNSPECIFIED;  // the widest allowed
  std::string path;
  uint64_t size = 0;
};

// "root or the broker's uid" below: a client of that uid, never a hosted
// service (a per-user broker runs its services as its own uid).
struct BrokerStatus {
  uint32_t version = 0;
  uint64_t uptime_seconds = 0;
  uint32_t connections = 0;
  uint64_t grants = 0;
  uint64_t denials = 0;
  std::vector<std::pair<std::string, uint64_t>> denials_by_reason;
  std::string policy_path;  // empty unless we are root or the broker's uid
  uint32_t capabilities = 0;
  uint32_t principals = 0;
  uint64_t policy_generation = 0;      // 1 at start, +1 per reload
  uint64_t policy_reload_failures = 0;
  // The last reload (SIGHUP): how long ago (-1: none yet), whether it was
  // refused, and why (empty when it was installed, and unless we are root
  // or the broker's uid).
  int64_t last_reload_seconds_ago = -1;
  bool last_reload_refused = false;
  std::string last_reload_error;
  // Audit lines that could not be written (a grant's, a denial's or any
  // other; a grant whose line was lost was withheld), and
  // why the last reopen of the audit log (SIGHUP, or after its file was
  // deleted) was refused (empty once one worked, and unless we are root or
  // the broker's uid).
  uint64_t audit_lines_lost = 0;
  std::string audit_log_error;
  // Audit lines written to the log's file after it was last seen with its
  // name, when it was then found deleted (rm): lost with it.
  uint64_t audit_lines_to_deleted_files = 0;
};

// An entry of Services().
struct ServiceInfo {
  std::string name;
  schema::ServiceState state = schema::ServiceState::STOPPED;
  int32_t pid = 0;
  uint32_t restarts = 0;
  uint64_t uptime_seconds = 0;
  std::string protections;  // in force: "userns mountns ... landlock:7"
  // The texts below hold at most wire::kMaxServiceTextBytes each (a longer
  // one is cut by the broker, and ends "... (truncated; N bytes)").
  // `missing` and `last_exit` can quote the administrator's paths: unless
  // we are root or the broker's uid, a nonempty one reads "(shown to root
  // and the broker's user)".
  std::string missing;      // best-effort protections not in force, and why
  std::string last_exit;
  std::string activation;   // "onDemand" or "atStart"
  // An old instance (removed from the policy, or restarted by a reload)
  // that has not exited yet; the policy's own of the same name, if any, is
  // another entry, before it.
  bool removed = false;
};

// A connection the broker made to this service for a permitted client:
// what a service receives (Client::NextIncoming), with who is on the other
// end as the broker established it.
struct IncomingConnection {
  UniqueFd fd;            // SEQPACKET, close-on-exec
  std::string principal;  // the policy principal (or service) that allowed it
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;        // in the broker's pid namespace; 0 for a service
};

// Options of OpenBeneath.
struct BeneathOptions {
  schema::Access access = schema::Access::READ;
  bool create = false;
  bool truncate = false;
  mode_t mode = 0600;
};

// Options of Connect and FromFd.
struct ClientOptions {
  // How long the broker may take to answer: Connect's connection and
  // handshake together (FromFd's handshake), and then each request, from
  // when it is sent (each page of List and Services is one). Positive, or
  // absl::InfiniteDuration(), the default: no limit. A call past it
  // returns kDeadlineExceeded, "the broker did not answer within 2s", and
  // closes the connection, since a late answer would be read as the next
  // request's; later calls fail with kUnavailable naming it. A request
  // that cannot even be sent in time (a peer that reads nothing) returns
  // kDeadlineExceeded and leaves the connection as it was. NextIncoming is
  // not bounded: a service waits for its clients as long as it runs.
  // Enforced with poll(2) before each send and receive, for the time left
  // (a signal does not renew it; nor do messages that do not answer the
  // call, however many a peer sends); the connection is this Client's
  // alone, so that no one else reads what poll found.
  absl::Duration timeout = absl::InfiniteDuration();
};

class Client {
 public:
  // Connects to the broker at `socket_path`, and does the version
  // handshake. When `socket_path` is empty: at $CAPBROKER_SOCKET if set;
  // otherwise at $XDG_RUNTIME_DIR/capbroker/broker.sock (the user's own
  // broker; for root, only in a directory root owns: `su` keeps a user's),
  // and, if nothing exists there or XDG_RUNTIME_DIR is not set, at
  // /run/capbroker/broker.sock (the system broker, which serves every local
  // user). The order is wire::ClientSocketPaths'. kUnavailable when no
  // socket exists at any of these (the message names each), nothing
  // listens on it, or the file system keeps this user from it (EACCES: the
  // socket's mode, or a directory on its path; the message says so: it is
  // no decision of the policy). kFailedPrecondition when the socket found
  // through $XDG_RUNTIME_DIR is held by a process of another user than this
  // one and root (for root: by anyone but root), naming its uid: someone
  // may have re-pointed XDG_RUNTIME_DIR to a listener of their own, and no
  // other path is tried (wire::CheckRuntimeDirBroker; a socket the caller
  // names is not checked). kResourceExhausted when the broker refuses
  // the connection over a quota (its message names the flag).
  // kDeadlineExceeded when `options.timeout` passes first: the broker's
  // queue of connections it has not accepted yet is full, or it did not
  // answer the handshake. kInvalidArgument for a timeout that is not
  // positive.
  static absl::StatusOr<Client> Connect(absl::string_view socket_path = "",
                                        const ClientOptions& options = {});

  // Uses an already connected socket (one inherited from a parent, for
  // example) and does the handshake. `fd` must be a connected
  // SOCK_SEQPACKET socket (kInvalidArgument otherwise, a listening socket
  // included). The client sets FD_CLOEXEC on it, so that
  // an inherited, authenticated connection does not leak into a program
  // this process runs later, turns off SO_PASSCRED, SO_PASSSEC and
  // SO_PASSPIDFD (with the last, every reply would bring a pidfd, an fd
  // of its own), and clears O_NONBLOCK, since a call waits for its reply.
  // A receive timeout the socket has (SO_RCVTIMEO) bounds each call too,
  // as `options.timeout` does: kDeadlineExceeded, the connection closed.
  static absl::StatusOr<Client> FromFd(UniqueFd fd, const ClientOptions& options = {});

  // A Client moves with its connection. The one moved from is left closed:
  // every call on it fails with kUnavailable "this Client was moved from",
  // and fd() is -1.
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;

  // Who the broker sees.
  const PeerInfo& peer() const { return peer_; }

  // Asks for capability `name` with `access`, or with the access of the
  // grant when `access` is unspecified. Never wider than the grant.
  // kInvalidArgument, nothing sent, for a name that is empty or longer
  // than wire::kMaxNameBytes, in the broker's words
  // ("capability name is 100000 bytes; at most 64"): sdk/wire/request_text.h.
  absl::StatusOr<Capability> Acquire(
      absl::string_view name,
      schema::Access access = schema::Access::UNSPECIFIED);

  // Asks the broker to open `path` (relative) beneath directory capability
  // `directory`. No `..` escapes and no symlinks. kInvalidArgument, nothing
  // sent, for an empty `directory` or `path`, or one longer than
  // wire::kMaxNameBytes or wire::kMaxPathBytes, as for Acquire.
  absl::StatusOr<Capability> OpenBeneath(absl::string_view directory,
                                         absl::string_view path,
                                         const BeneathOptions& options = {});

  // The capabilities this client may request, in ascending order of name.
  // They come in pages, one request each, as many as it takes (each fits
  // in one datagram); a policy reload between two pages shows in the later
  // ones. kInternal, closing the connection as for any protocol error,
  // when the broker answers what no policy holds: a page whose names are
  // not strictly ascending from the last name before it (a repeated page,
  // one going back), an empty page with more to come, more than
  // wire::kMaxListEntries entries, names or paths longer than the wire's
  // limits. A broker older than pages answers with the whole list in one
  // reply, in policy order, which is taken as it is.
  absl::StatusOr<std::vector<CapabilityInfo>> List();

  // The broker's counters.
  absl::StatusOr<BrokerStatus> Status();

  // Asks for a connection to the hosted service `service`: the result is
  // one end of a SEQPACKET connection (kind connection) whose other end the
  // service received. Waits while an on-demand service starts.
  // kInvalidArgument, nothing sent, for a name that is empty or longer
  // than wire::kMaxNameBytes, as for Acquire.
  absl::StatusOr<Capability> ConnectService(absl::string_view service);

  // The hosted services and their state, in ascending order of name, an
  // old instance that has not exited yet (removed from the policy, or
  // replaced by a reload that changed its launch settings) after the
  // policy's own of that name. They come in pages, as List's do, with the
  // same checks: kInternal, closing the connection, for a page that does
  // not advance in that order, an empty page with more to come, more than
  // wire::kMaxServiceEntries entries, an empty name or one longer than the
  // wire's limit, or a text longer than wire::kMaxServiceTextBytes (the
  // broker cuts longer ones). A broker older than pages answers with the
  // whole report in one reply, which is taken as it is.
  absl::StatusOr<std::vector<ServiceInfo>> Services();

  // For a hosted service: tells the broker it is ready to serve. From the
  // call on, this client queues the `incoming` events the broker sends (a
  // client that has not called it takes one as a protocol error). If the
  // call fails (the broker refuses it: this is no hosted service), the
  // client is not ready: a later event is a protocol error again; those
  // that came while the call was outstanding stay queued.
  absl::Status Ready();

  // For a hosted service, once it has called Ready(): the next connection
  // the broker made for a client, waiting for one if none is queued. kUnavailable when the broker
  // closed the connection (the service should then exit). Messages of kinds
  // this client does not know (the schema grows) are skipped, their fds
  // closed; anything else that is not an event is a protocol error. Not
  // bounded by ClientOptions::timeout; a receive timeout on the socket
  // (SO_RCVTIMEO) that passes is kDeadlineExceeded, the connection open.
  absl::StatusOr<IncomingConnection> NextIncoming();

  // The connection's fd, still owned by the client; -1 once a protocol
  // error closed the connection.
  int fd() const { return channel_.fd(); }

  // How many `incoming` events wait in this client's own queue (they came
  // while it waited for a reply), each holding its connection's fd: a
  // service's loop that sizes itself by its free fds counts those as
  // connections, not as fds used for good.
  size_t queued_incoming() const { return events_.size(); }

  // How many `incoming` events this client has dropped since it was made,
  // their clients seeing end of stream: events whose fd did not fit in the
  // fd table (RLIMIT_NOFILE) when they arrived, and events beyond the 4096
  // its queue holds. Both happen while a call waits for its reply behind
  // events: a service's loop refuses the connections it has no room for,
  // but only once it takes them. A loop logs the count as it grows.
  uint64_t dropped_incoming() const { return dropped_incoming_; }

 private:
  // The channel takes the fds that fit (see the top of this file).
  Client(UniqueFd fd, absl::Duration timeout)
      : channel_(std::move(fd), wire::FdPolicy::kAcceptWhatFits), timeout_(timeout) {}

  // FromFd, within `deadline` (on MonotonicNow's clock, sdk/base/syscall.h;
  // absl::InfiniteDuration(): none), which Connect started.
  static absl::StatusOr<Client> Adopt(UniqueFd fd, absl::Duration timeout,
                                      absl::Duration deadline);

  // Whether a call's reply may carry fds: a grant's does (TakeGrant checks
  // it carries one), no other's.
  enum class ReplyFds { kNone, kGrant };

  // Sends `request` (its id is set here) and receives the matching reply,
  // which `read` reads under CatchKj, within timeout_. An error reply
  // becomes a status; an error `read` returns, or anything else wrong once
  // the request is sent, the timeout included, is a protocol error (Break):
  // an error reply that lists fds, and, for `fds` kNone, a reply that does.
  template <typename Fill, typename Read>
  absl::Status Call(ReplyFds fds, Fill fill, Read read);
  // Call, by `deadline` (as for Adopt).
  template <typename Fill, typename Read>
  absl::Status CallUntil(absl::Duration deadline, ReplyFds fds, Fill fill, Read read);

  absl::Status Hello(absl::Duration deadline);

  // closed_: OK while the connection is open.
  absl::Status CheckOpen() const { return closed_; }

  // Closes the connection after the protocol error `why`, which every later
  // call reports; returns `why`.
  absl::Status Break(absl::Status why);

  // A call's timeout passed without its reply.
  absl::Status NoAnswer() const;

  // Leaves this Client, just moved from, closed with nothing of its own.
  void LeaveMovedFrom();

  // The next message from the broker, with its fd list checked against
  // the fds its datagram carried (fewer when they were cut, and then at
  // most wire::kMaxFdsPerMessage listed); a hang-up says so.
  absl::StatusOr<wire::Incoming> Receive();

  // Sending a request failed with `send_error` (kUnavailable): the broker
  // has hung up. The reason it sent before it did (an error with id 0, as
  // when it refuses a connection over a quota) if one waits, else
  // `send_error`.
  absl::Status WhyHungUp(absl::Status send_error);

  // Reads an `incoming` event (a reply with id 0, `incoming`'s root) into
  // events_, or drops it (dropped_incoming_), and skips unknown kinds. An
  // event before Ready(), without exactly one fd, or with a principal that
  // is not a policy's name (wire::IsPolicyName) is a protocol error.
  absl::Status QueueEvent(schema::Reply::Reader reply, wire::Incoming& incoming);

  wire::Channel channel_;
  absl::Duration timeout_;                 // ClientOptions::timeout
  std::deque<IncomingConnection> events_;  // at most kMaxQueuedEvents
  uint64_t dropped_incoming_ = 0;
  uint64_t next_id_ = 1;                   // of the next request sent
  bool said_ready_ = false;  // Ready() was called and did not fail: a service
  // What every call returns once the connection is closed (after a
  // protocol error, or a move); OK while it is open.
  absl::Status closed_;
  PeerInfo peer_;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CLIENT_CLIENT_H_

// RequestHandler: answers one decoded request of one connection.
//
// It is the broker's logic without its I/O loop: check the request, ask the
// policy, make the capability, record the audit line, and fill in the reply.
// Every outcome is a reply; a request can never crash the broker. The loop
// (broker_loop.h) owns sockets, queues and limits on connections.
//
// Security rules applied here:
// - the policy decides on the identity the broker took at accept time, never
//   on anything the client says about itself;
// - the broker opens paths itself, with the policy's path, never one the
//   client sent (open-beneath paths are resolved with RESOLVE_BENEATH);
// - a client may ask for less access than its grant, never more;
// - `status` shows where the policy lives and why the last reload failed
//   (which quotes the policy's text and paths) only to the broker's own uid
//   and root, never to a hosted service (in a per-user broker, services run
//   as the broker's uid); other clients get empty strings there. `services`
//   shows a service's last exit and missing protections (which can quote
//   capability paths and the policy's) to the same, and others a
//   placeholder; a connect refused because its service failed or could not
//   start tells others where to see why, not why (ConnectRequest::
//   administrator), and its audit line keeps the whole reason.
//
// Not thread-safe: used by the event-loop thread only.
#ifndef CAPBROKER_BROKER_SERVER_REQUEST_HANDLER_H_
#define CAPBROKER_BROKER_SERVER_REQUEST_HANDLER_H_

#include <sys/types.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "broker/audit/audit_log.h"
#include "broker/caps/open_path.h"
#include "broker/policy/identity.h"
#include "broker/policy/policy.h"
#include "broker/server/service_directory.h"
#include "broker/server/stats.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

// Per-connection protocol state the handler reads and updates.
struct Session {
  Identity identity;
  bool hello_done = false;
  uint64_t connection_id = 0;  // the loop's id for the connection
  // `identity` as audit lines give it (audit::RenderPeer): made for the
  // connection's first line, then reused.
  mutable std::string audit_peer;
};

// What to do after a reply: the fds that go with it and whether the
// connection ends once the reply is sent.
struct Outcome {
  std::vector<UniqueFd> fds;
  // A shared memfd sent after `fds`: the broker's own fd of a shared memory
  // capability, for a readWrite grant. SCM_RIGHTS gives the client a new fd
  // but not a new open file description: every readWrite grantee (and a
  // service's start grant, a dup) shares the broker's, so its file offset,
  // its status flags (any holder may set O_APPEND for all, which makes
  // write and even pwrite fail against the size seal) and its flock and OFD
  // locks. That gives no holder more than its grant: each can already write
  // every byte of the memory, or spoil it, and the seals fix its size; mmap
  // is untouched by all three. A new open per grant would cost a syscall on
  // every grant, so the broker sends its own (a read grant does get a new,
  // read-only open: caps::ReopenReadOnly); the README tells grantees to use
  // mmap. The reference keeps it open until the reply is sent, even if a
  // policy reload drops it.
  std::shared_ptr<const UniqueFd> shared_fd;
  bool close_after_reply = false;
  // No reply now: a connect to a service that is starting, which the
  // service host answers later through the loop.
  bool deferred = false;
  // The reply to a hosted service's `ready`: once it is queued, and only
  // then, the loop calls AnswerWaitingConnects (ServiceDirectory::Ready
  // says why), whether or not it could queue it.
  bool answer_waiting = false;
  // A grant's audit line (AuditLog sequence number), 0 for anything else.
  // The loop delivers the grant only if that line was written.
  uint64_t audit_line = 0;
  // For a grant of a file open (acquire, openBeneath): what the open left
  // to complete once the grant's line is written (truncate), or to undo if
  // it is lost (a file it made). The loop writes the line of such a grant
  // at once (BrokerLoop::Settle).
  caps::OpenEffects effects;
  // A grant on record (a connect's too, answered later by the service
  // host): the principal that allowed it, so that a reply the loop drops
  // unsent (its client disconnected, the broker stopped) gets a line that
  // says so (GrantNotDelivered). Empty for every other reply.
  std::string principal;
  // For a grant of a file open (acquire of a file capability, openBeneath):
  // what the open did besides opening (create with its mode, truncate: for
  // an acquire, the policy's, for an open beneath, the request's) and
  // whether it made the file, as its grant line says, so that a line
  // saying it was not delivered names the same request (a file it made
  // stays: its grant line says so).
  audit::OpenOptions open;
};

class RequestHandler {
 public:
  // Borrows `audit` and `stats`, which must outlive the handler. It grants
  // nothing until SetPolicy succeeds. Peers of uid 0 or `broker_uid` (the
  // broker's euid by default) are its administrators (see Status), hosted
  // services excepted.
  // `hard_links` says whether the host keeps users from hard-linking others'
  // files (by default read from fs.protected_hardlinks, once, here); where
  // it does not, file capabilities and open beneath refuse files with more
  // than one link (caps::OpenFile, caps::OpenBeneath).
  RequestHandler(audit::AuditLog& audit, Stats& stats, uid_t broker_uid = geteuid(),
                 caps::HardLinks hard_links = caps::ReadHardLinkProtection());

  // Installs `policy` for every request from now on, on every connection:
  // creates the memfds of its shared memory capabilities, keeping those of
  // capabilities whose name and size are unchanged (their holders go on
  // sharing with new grantees), then replaces the current policy. On error
  // nothing changes: the current policy stays whole. Once it is in force,
  // logs on stderr a note for each file or directory capability whose path
  // lies on a FUSE or network file system (RemotePathNotes): the broker
  // opens those in its only thread, which waits for as long as that file
  // system does not answer; and for each principal whose `exe` is a script,
  // which never matches (ScriptExeNotes); both from LoadNotes.
  absl::Status SetPolicy(Policy policy);

  const Policy& policy() const { return policy_; }

  // Where connect, ready and services requests go; null (the default): the
  // broker hosts no services and refuses them. Borrowed.
  void SetServiceDirectory(ServiceDirectory* services) { services_ = services; }

  // Refuses an fd made for a service's start (capbrokerd: a directory that
  // holds its policy file or socket, daemon/hidden_config.h), given the
  // capability's name and the fd (borrowed) as the service would get it.
  using StartCheck = std::function<absl::Status(absl::string_view capability, int fd)>;

  // Makes the fds of the capabilities `grants` (indices into the policy's
  // capabilities, which the policy grants the service `service`) for
  // delivery at its start, checks each with `check` (unset: none is
  // refused), and only then puts them on record, as request "start": every
  // one as granted, or, when one cannot be made or is refused, that one as
  // denied with its reason and none as granted (the fds made are closed and
  // the status returned). The caller must see the lines written (LoopPort::
  // AuditLinesLost) before the fds reach the service.
  // What of a start is on record as granted, for StartNotDelivered: the
  // service and each grant's capability, access and audit line, copied (a
  // reload may replace the policy before the start ends).
  struct StartRecord {
    struct Grant {
      std::string capability;
      schema::Access access = schema::Access::UNSPECIFIED;
      uint64_t audit_line = 0;  // AuditLog sequence number
      // For a file: what its open did besides opening, as its line says
      // (Outcome::open), for the line saying it was not delivered.
      audit::OpenOptions open;
    };
    Identity service;
    std::vector<Grant> grants;
    // The grants' audit lines, in order.
    std::vector<uint64_t> AuditLines() const;
  };
  struct StartGrants {
    std::vector<UniqueFd> fds;  // in the order of `grants`
    // What their opens left to complete once their lines are written, or
    // to undo if not (caps::OpenEffects), in the same order.
    std::vector<caps::OpenEffects> effects;
    StartRecord record;
  };
  // `service` is the service's identity (Identity::service set).
  absl::StatusOr<StartGrants> GrantAtStart(const Identity& service,
                                           const std::vector<size_t>& grants,
                                           const StartCheck& check);

  // A connect that waited for its service to start (Outcome::deferred, its
  // line saying granted: the policy allowed it) and was answered `why`
  // instead of a connection: a second line, a denial of the same connect,
  // so that the log shows it was never delivered, and why (AuditReason).
  // Counted as a denial too.
  void ConnectNotDelivered(const ConnectRequest& request, absl::string_view service,
                           const absl::Status& why);

  // The start whose grants `record` holds (GrantAtStart, their lines
  // written) ended before its grants were delivered, for reason `why`: a
  // denial of each, its reason "not delivered: WHY", as for a connect
  // above. The service host says when a start grant is delivered
  // (service_host.cc: once the service's program runs).
  void StartNotDelivered(const StartRecord& record, const absl::Status& why);

  // Of the start grants in `record`, those whose audit lines are among
  // `lost` (LoopPort::AuditLinesLost: a flush that wrote part of the lines
  // and lost the rest) are not on record: they are taken out of `record`,
  // so that StartNotDelivered follows only the lines the log holds, and
  // are no longer counted as grants.
  void StartLinesLost(StartRecord& record, const std::vector<uint64_t>& lost);

  // A grant whose line says granted (Outcome::principal set) and whose
  // reply `reply` (the broker's own, one fd entry) the loop dropped before
  // sending it to `session`'s client, for reason `why`: a denial of the
  // same request, its reason "not delivered: WHY", as for a connect above.
  // `open`: the grant's Outcome::open, for a file's open.
  void GrantNotDelivered(const Session& session, kj::ArrayPtr<const capnp::word> reply,
                         absl::string_view principal, const audit::OpenOptions& open,
                         absl::string_view why);

  // Answers `request` from `session` into `reply` (an initialized root).
  // Call under CatchKj: reading a malformed request throws.
  Outcome Handle(Session& session, schema::Request::Reader request,
                 schema::Reply::Builder reply);

  // Fills `reply` with an error. Used for datagrams that could not be read.
  static void SetError(schema::Reply::Builder reply, const absl::Status& status);

  // Fills a grant of a connection to `service` (its fd goes in the reply's
  // datagram): the connect reply, and the service's `incoming` event.
  static void SetConnection(absl::string_view service, schema::Reply::Builder reply);

  // Records a rejected request in the statistics.
  void CountDenial(const absl::Status& status);

  // Refuses a request from `session` that names nothing to grant: one that
  // could not be read or broke the protocol (`request_kind` "invalid": an
  // unreadable datagram, request id 0, a request before hello or of an
  // unknown kind), a hello or a ready refused ("hello", "ready"), a page
  // of list or services refused ("list", "services": a startAfter longer
  // than a name, or a reply too large for one page asked for by a client
  // older than pages). Counted
  // as a denial and put on record as one, capability and access empty,
  // within the uid's denial budget (audit::DenialBudget), so that a client
  // cannot flood the log with them. The caller sends the error reply.
  void DenyRequest(const Session& session, absl::string_view request_kind,
                   const absl::Status& status);

  // Undoes what the opens of grants that are not on record left
  // (caps::OpenEffects::Undo: a file made is removed again); a file that
  // cannot be removed is named on stderr, for the administrator to remove.
  static void UndoEffects(absl::Span<caps::OpenEffects> effects);

  // Withdraws a deferred connect (Outcome::deferred) whose audit line could
  // not be written: the service host forgets it.
  void WithdrawConnect(uint64_t connection_id, uint64_t request_id);

  // The loop closed connection `connection_id`, a hosted service's, on its
  // own: the service host stops that service (ServiceDirectory::
  // ConnectionLost).
  void ServiceConnectionLost(uint64_t connection_id);

  // Connection `connection_id` has closed, a client's or a hosted
  // service's, however it ended: the service host withdraws its waiting
  // connects (ServiceDirectory::ClientGone), on record with `why`.
  void ClientConnectionClosed(uint64_t connection_id, absl::string_view why);

  // The reply to `session`'s `ready` (Outcome::answer_waiting) is queued,
  // or was dropped with its connection: the service host answers the
  // connects that waited for that service to start
  // (ServiceDirectory::AnswerWaiting).
  void AnswerWaitingConnects(const Session& session);

 private:
  Outcome Hello(Session& session, schema::Hello::Reader hello,
                schema::Reply::Builder reply);
  Outcome Acquire(const Session& session, schema::Acquire::Reader acquire,
                  schema::Reply::Builder reply);
  Outcome OpenBeneath(const Session& session, schema::OpenBeneath::Reader open,
                      schema::Reply::Builder reply);
  Outcome Connect(const Session& session, uint64_t request_id,
                  schema::Connect::Reader connect, schema::Reply::Builder reply);
  Outcome Ready(const Session& session, schema::Reply::Builder reply);
  // A page of the services report (ServicesPage in broker.capnp): the
  // hosted services and the old instances that have not exited (removed
  // from the policy, or replaced by a reload that changed their launch
  // settings), in name order, their texts cut to
  // wire::kMaxServiceTextBytes; for a request without servicesPage, all of
  // them in one `services` reply if they fit in a page. Only for
  // administrators (IsAdministrator) the texts `missing` and `lastExit`;
  // for others, a placeholder where there is one.
  void Services(const Session& session, schema::Request::Reader request,
                schema::Reply::Builder reply);
  // A page of the capabilities `session` may ask for (ListPage in
  // broker.capnp), or for a request without listPage, all of them in one
  // `list` reply if they fit in a page. Not audited: it hands out nothing.
  void List(const Session& session, schema::Request::Reader request,
            schema::Reply::Builder reply);
  void Status(const Session& session, schema::Reply::Builder reply);
  // Whether `session` may see what tells about the administrator's files
  // (the policy's path, reload and audit errors, services' exit texts):
  // root and the broker's uid, but never a hosted service's session.
  bool IsAdministrator(const Session& session) const;

  // Fills a grant reply for `spec` with `access` (its fd goes in the reply's
  // datagram).
  static void SetGranted(const CapabilitySpec& spec, schema::Access access,
                         schema::Reply::Builder reply);

  // DenyRequest, and the error reply.
  void Deny(const Session& session, absl::string_view request_kind,
            const absl::Status& status, schema::Reply::Builder reply);

  // Makes the fd for a granted capability; for a file, `effects` gets what
  // its open left to complete or undo (caps::OpenEffects), and `open` what
  // the open did besides opening, for its audit line (Outcome::open), set
  // whether or not the open succeeded.
  absl::StatusOr<UniqueFd> Make(const CapabilitySpec& spec, schema::Access access,
                                caps::OpenEffects& effects, audit::OpenOptions& open);
  // The fd of `capability` for a service's start, refused by `check` if it
  // says so; errors name the capability. `effects` and `open` as for Make.
  absl::StatusOr<UniqueFd> MakeForStart(const CapabilitySpec& capability,
                                        const StartCheck& check, caps::OpenEffects& effects,
                                        audit::OpenOptions& open);

  // The denial of a request whose grant is on record, saying it was not
  // delivered, and why (its reason "not delivered: " + AuditReason(why)),
  // with the principal and, for a file's open, the open options of the
  // grant: for ConnectNotDelivered, StartNotDelivered and
  // GrantNotDelivered.
  void NotDelivered(const Session& session, absl::string_view request_kind,
                    absl::string_view capability, schema::Access access,
                    absl::string_view path, const absl::Status& why,
                    absl::string_view principal, const audit::OpenOptions& open = {});
  // Ends a grant or a denial: audit line, statistics, and an error reply
  // when `status` is not OK (its message; the line gives AuditReason).
  // `open`: what a file's open does besides opening, for the line.
  // `budget`: kExempt for a denial that corrects or completes a line on
  // record (audit::AuditEvent::exempt_from_budget).
  // Returns the audit line's sequence number.
  enum class Budget { kCounted, kExempt };
  uint64_t Finish(const Session& session, absl::string_view request_kind,
              absl::string_view capability, schema::Access access,
              absl::string_view path, const absl::Status& status,
              absl::string_view principal, schema::Reply::Builder reply,
              const audit::OpenOptions& open = {}, Budget budget = Budget::kCounted);
  // Finish without the reply: the audit line (`access_name` as written)
  // and the statistics.
  uint64_t Record(const Session& session, absl::string_view request_kind,
                  absl::string_view capability, absl::string_view access_name,
                  absl::string_view path, const absl::Status& status,
                  absl::string_view principal, const audit::OpenOptions& open,
                  Budget budget);

  Policy policy_;
  // Indices into policy_.capabilities() in ascending order of name, the
  // order of list pages; made by SetPolicy.
  std::vector<size_t> by_name_;
  ServiceDirectory* services_ = nullptr;
  audit::AuditLog& audit_;
  Stats& stats_;
  uid_t broker_uid_;
  caps::HardLinks hard_links_;
  // Shared memfds by capability name; queued replies may hold references.
  absl::flat_hash_map<std::string, std::shared_ptr<const UniqueFd>> shared_memory_;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_REQUEST_HANDLER_H_

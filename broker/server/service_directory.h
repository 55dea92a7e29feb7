// ServiceDirectory: what the request handler asks of the service host.
//
// The handler decides (policy) whether a client may connect to a service;
// the host, which launches and supervises services, makes the connection.
// This interface keeps the handler free of processes and sandboxes, and
// lets the host live in its own package (broker/service).
#ifndef CAPBROKER_BROKER_SERVER_SERVICE_DIRECTORY_H_
#define CAPBROKER_BROKER_SERVER_SERVICE_DIRECTORY_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/policy/identity.h"
#include "broker/policy/policy.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

// A permitted connection request, as the handler decided it.
struct ConnectRequest {
  uint64_t connection_id = 0;  // the client's connection (BrokerLoop ids)
  uint64_t request_id = 0;     // to answer a deferred request
  Identity client;
  std::string principal;       // the principal (or service) that allowed it
  // Whether the client may read why a service failed or could not start,
  // which can quote capability paths and the policy file's: the handler's
  // one rule (RequestHandler::IsAdministrator), as for `capctl services`.
  bool administrator = false;
};

// A refusal whose message leaves out what only administrators may read
// (see ConnectRequest::administrator) carries the whole text for the audit
// line, which the handler writes and only root reads. `shown` is what the
// client gets (its code is the refusal's); `full`, the reason on record.
absl::Status WithAuditReason(absl::Status shown, absl::string_view full);

// The reason an audit line gives for `status`: the text WithAuditReason
// attached, else its message.
std::string AuditReason(const absl::Status& status);

// One service as `capctl services` shows it.
struct ServiceReport {
  std::string name;
  schema::ServiceState state = schema::ServiceState::STOPPED;
  pid_t pid = 0;
  uint32_t restarts = 0;
  uint64_t uptime_seconds = 0;
  std::string protections;  // "userns mountns ... landlock:7"
  std::string missing;      // best-effort protections not in force, and why
  std::string last_exit;
  std::string activation;
  // An old instance (removed from the policy, or restarted by a reload
  // that changed its launch settings) that has not exited yet. The
  // policy's own instance of the same name, if any, is another report.
  bool removed = false;
  // The policy's instance, waiting for that old one to exit before it
  // starts (said after last_exit, which not everyone may see).
  bool waits_for_removed_instance = false;
};

class ServiceDirectory {
 public:
  virtual ~ServiceDirectory() = default;

  // Connects `request.client` to `service`. Returns the client's end of the
  // new connection, or nullopt when the service is starting: the host then
  // answers request `request.request_id` itself (through the loop) once the
  // service is ready or has failed. An error says why no connection can be
  // made (kUnavailable: the service failed or cannot start); for a client
  // that is no administrator, without why a start failed (that stays for
  // the audit line: WithAuditReason).
  virtual absl::StatusOr<std::optional<UniqueFd>> Connect(
      const ServiceSpec& service, const ConnectRequest& request) = 0;

  // Forgets the waiting connect `request_id` of connection `connection_id`
  // (nothing is sent for it): the broker could not record its grant.
  virtual void Withdraw(uint64_t connection_id, uint64_t request_id) = 0;

  // The loop closed connection `connection_id` on its own (the peer hung up,
  // sent what it may not, or the socket failed). If it was a service's
  // broker connection, the host stops that service: nobody can reach it any
  // more, and its restart policy brings it back with a new connection.
  virtual void ConnectionLost(uint64_t connection_id) = 0;

  // Connection `connection_id` has closed (the client hung up, the loop
  // disconnected it, or, for a hosted service's broker connection, which
  // may connect to other services too, the host closed it): its connects
  // still waiting for a service to start are withdrawn, on record as not
  // delivered, and no longer count against its uid's share of the waiting
  // places. `why` says how it ended, for the record: "the client hung up",
  // or why the broker closed it. May be called from within the host's own
  // calls to the loop (LoopPort::CloseConnection, Send).
  virtual void ClientGone(uint64_t connection_id, absl::string_view why) = 0;

  // The service `name` says it is ready to serve: it is running from now
  // on, and a connect to it is answered at once. The connects that waited
  // for its start keep waiting until AnswerWaiting, which the loop calls
  // once this request's reply is queued (Outcome::answer_waiting): each
  // hands the service an `incoming` event with an fd, sent at once, and
  // the service must have its reply first. Taken while it waited in
  // Ready(), their fds would be counted by the service as used for good
  // (a loop sizes itself by its free fds once ready), or, more than its
  // fd table holds, make the reply's receive fail (MSG_CTRUNC).
  virtual absl::Status Ready(absl::string_view name) = 0;

  // Answers the connects that waited for service `name` to start, if it
  // is running: the reply to its `ready` is queued (see Ready).
  virtual void AnswerWaiting(absl::string_view name) = 0;

  // Every service of the policy, and every instance removed from it that
  // has not exited yet; in no particular order (the handler sorts them).
  virtual std::vector<ServiceReport> Report() const = 0;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_SERVICE_DIRECTORY_H_

// LoopPort: what the service host asks of the event loop.
//
// The loop owns every socket and the epoll set. The host watches its own
// fds (pidfds, output pipes, timers) through it, hands it the broker's end
// of each service's connection, and sends messages on connections it does
// not own (deferred connect replies, `incoming` events). Connections are
// named by ids that are never reused, so a message for a client that has
// gone can never reach another client that got the same fd number.
#ifndef CAPBROKER_BROKER_SERVER_LOOP_PORT_H_
#define CAPBROKER_BROKER_SERVER_LOOP_PORT_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/policy/identity.h"
#include "broker/server/dispatch.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

class LoopPort {
 public:
  virtual ~LoopPort() = default;

  // Calls `on_readable` whenever `fd` (borrowed; it must stay open until
  // Unwatch) is readable, or has hung up.
  virtual absl::Status Watch(int fd, std::function<void()> on_readable) = 0;
  virtual void Unwatch(int fd) = 0;

  // Serves `fd`, the broker's end of a service's connection, as a client
  // connection whose identity is `identity` (Identity::service set).
  // Returns its connection id.
  virtual absl::StatusOr<uint64_t> AddServiceConnection(UniqueFd fd,
                                                        Identity identity) = 0;

  // Queues `answer` on connection `id`. False when the connection is gone or
  // its queue is full (the connection is then closed); the answer and its
  // fds are dropped. A grant on record (Outcome::principal) dropped unsent,
  // now or later, is put on record as not delivered, with why.
  virtual bool Send(uint64_t id, Answer answer) = 0;

  // Writes `answer` to connection `id` now, after the audit log and
  // whatever its queue holds, or not at all: false, and the answer and its
  // fds dropped, when the connection is gone or its socket is full (the
  // connection stays open). For a service's end of a new connection, which
  // must have left the broker before the client gets the other end.
  virtual bool Deliver(uint64_t id, Answer answer) = 0;

  // Closes connection `id`, if it is still open.
  virtual void CloseConnection(uint64_t id) = 0;

  // Whether connection `id` is still open. A Send can close a connection
  // (its queue full), and with it one the host is about to answer again.
  virtual bool IsOpen(uint64_t id) const = 0;

  // Writes the audit log now. Returns those of `lines` (sequence numbers
  // from AuditLog::Record) that could not be written, in the order given:
  // empty when every one is on record, and a grant is delivered only then.
  // A write can take some of the lines and lose the rest (a full disk
  // takes what fits): the caller learns which are on record.
  virtual std::vector<uint64_t> AuditLinesLost(const std::vector<uint64_t>& lines) = 0;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_LOOP_PORT_H_

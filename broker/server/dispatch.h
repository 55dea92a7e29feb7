// From a received request datagram to the reply to queue.
//
// AnswerRequest is the broker's whole treatment of one request's bytes:
// framing checks, Cap'n Proto decoding under capbroker's limits, refusing
// fds a request should not carry, and the handler's answer, flattened for
// sending. It never throws and never fails: whatever the bytes, the result
// is a reply (an error reply for anything malformed). The event loop calls
// it for every datagram, and the fuzz target calls it directly.
#ifndef CAPBROKER_BROKER_SERVER_DISPATCH_H_
#define CAPBROKER_BROKER_SERVER_DISPATCH_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "broker/server/request_handler.h"
#include "capnp/common.h"
#include "kj/array.h"

namespace capbroker::server {

// A reply ready to queue: the flattened message and what goes with it.
struct Answer {
  kj::Array<capnp::word> words;
  Outcome outcome;
  uint64_t id = 0;  // the request's id, which the reply echoes
};

// An error reply to request `id` (0 when the request could not be read).
Answer ErrorAnswer(uint64_t id, const absl::Status& status, bool close_after);

// Answers the request in `words`, one datagram; `carried_fds` says that it
// carried fds (which the broker never receives: requests carry none).
// `scratch` is a zeroed first segment for the reply builder, zeroed again
// when this returns.
Answer AnswerRequest(RequestHandler& handler, Session& session,
                     kj::ArrayPtr<const capnp::word> words, bool carried_fds,
                     kj::ArrayPtr<capnp::word> scratch);

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_DISPATCH_H_

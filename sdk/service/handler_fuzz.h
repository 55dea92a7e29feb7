// HandlerFuzz: a fuzz driver for a service's RequestHandler, played by a
// hostile client through a real ConnectionLoop (loop_harness.h), so that
// what is fuzzed is the whole path from a request datagram to its reply:
// the wire limits, the framing check, the handler, the reply's framing
// (test only).
//
//   static HandlerFuzz* fuzz = new HandlerFuzz(handler, options, {
//       .read_request = [](capnp::MessageReader& request) { ... },
//       .check_reply = [](capnp::MessageReader& request, capnp::MessageReader& reply) {
//         ... FuzzCheck(...) ...
//       }});
//   fuzz->Run(input);
//
// Invariants checked for every handler: each request is answered by one
// reply, or its connection is closed; a request the handler can read is
// answered (the connection is closed only for datagrams that are not
// messages of the protocol); a reply is one well-framed message within
// the wire's limits, carries no fds, and answers a well-framed request;
// the loop never fails; and nothing a client sends leaves an fd open in
// the service once its connection is closed. A broken invariant aborts
// (FuzzCheck).
#ifndef CAPBROKER_SDK_SERVICE_HANDLER_FUZZ_H_
#define CAPBROKER_SDK_SERVICE_HANDLER_FUZZ_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "capnp/message.h"
#include "sdk/service/connection_loop.h"
#include "sdk/service/error_reply.h"
#include "sdk/service/loop_harness.h"
#include "sdk/wire/datagram.h"
#include "tests/fixtures/fuzz_check.h"

namespace capbroker::testing {

// What a fuzz target knows of its protocol. Both run under CatchKj.
struct ProtocolChecks {
  // Reads every field of `request` that the handler reads, and so throws
  // (a kj exception, as the handler's reads do) for a request the handler
  // cannot read. A request it reads must be answered.
  std::function<void(capnp::MessageReader& request)> read_request;
  // Checks one reply against the request it answers, with FuzzCheck. A
  // reply that cannot be read breaks an invariant too. An error reply may
  // answer a request nobody read (a refusal for its fds): read the request
  // only for replies that the handler gives.
  std::function<void(capnp::MessageReader& request, capnp::MessageReader& reply)> check_reply;
  // Whether the protocol's requests take a file: the input begins with one
  // (tests/fixtures/fuzz_file.h), and it is the first fd of every record;
  // the other fds are socket ends, as for a protocol that takes none.
  bool takes_file = false;
};

// Checks an error reply of a service protocol (error_reply.h): a status
// code other than OK, and a message that says why in few words.
template <typename ErrorReader>
void CheckErrorReply(ErrorReader error) {
  FuzzCheck(error.getCode() != 0 &&
                error.getCode() <= static_cast<uint32_t>(absl::StatusCode::kUnauthenticated),
            "an error has a status code");
  FuzzCheck(error.getMessage().size() > 0, "an error says why");
  FuzzCheck(error.getMessage().size() <= kMaxErrorMessageBytes, "an error message is short");
}

class HandlerFuzz {
 public:
  // Borrows `handler`, which must outlive this object. Aborts if the loop
  // cannot be started.
  HandlerFuzz(RequestHandler& handler, ConnectionLoop::Options options, ProtocolChecks checks);

  // One fuzz input: a new connection sends the input's datagrams
  // (tests/fixtures/fuzz_datagrams.h; after a file, fuzz_file.h, if the
  // protocol takes one) one at a time, each answered before the next,
  // until the service closes it; then the client hangs up.
  void Run(absl::Span<const uint8_t> input);

  // The count of fds the request being answered came with, for
  // check_reply, which knows the input's records but not which one is
  // answered (a record the socket refuses is skipped).
  size_t request_fds() const { return request_fds_; }

 private:
  // Turns the loop until `client` (borrowed) has something to read: a
  // reply, or end of stream. A loop that never answers blocks here, which
  // libFuzzer reports as a timeout.
  void TurnUntilReadable(int client);
  // Receives and checks the answer to `request`, sent with `fds` fds, on
  // `client`; false when the service closed the connection instead.
  bool Answered(int client, absl::Span<const uint8_t> request, size_t fds);

  const ProtocolChecks checks_;
  LoopHarness harness_;
  wire::ReceiveBuffer buffer_;
  size_t request_fds_ = 0;
};

}  // namespace capbroker::testing

#endif  // CAPBROKER_SDK_SERVICE_HANDLER_FUZZ_H_

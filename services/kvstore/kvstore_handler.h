// KvstoreHandler: the kvstore protocol (kvstore.capnp) on a ConnectionLoop.
//
// Every client the broker lets connect shares the one store: who may
// connect (the service's `connect` list in the policy) is the access
// control.
#ifndef CAPBROKER_SERVICES_KVSTORE_KVSTORE_HANDLER_H_
#define CAPBROKER_SERVICES_KVSTORE_KVSTORE_HANDLER_H_

#include <cstddef>
#include <utility>

#include "sdk/service/connection_loop.h"
#include "sdk/wire/limits.h"
#include "services/kvstore/store.h"

namespace capbroker::kvstore {

// What the keys of one list reply may take of the message, counted as the
// encoding really costs (ListReplyBytes); the rest of the wire's
// message limit is left for the segment table and the structs around them.
inline constexpr size_t kMaxListReplyBytes = wire::kMaxMessageBytes - 2048;

// What a key takes in a list reply: its pointer in the list, a far
// pointer's landing pad (when the builder put the key in another segment
// than the list), and its bytes padded to whole words.
inline constexpr size_t ListReplyBytes(size_t key_bytes) { return 8 + 8 + (key_bytes + 7) / 8 * 8; }

class KvstoreHandler : public RequestHandler {
 public:
  explicit KvstoreHandler(Store store) : store_(std::move(store)) {}

  // How the kvstore's ConnectionLoop must run: its requests carry no fds.
  static ConnectionLoop::Options LoopOptions() { return {.max_request_fds = 0}; }

  // Bad keys, values over the limit, and request kinds this version does
  // not know get an error reply.
  absl::Status Handle(Exchange& exchange) override;
  bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) override;

 private:
  Store store_;
};

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_KVSTORE_HANDLER_H_

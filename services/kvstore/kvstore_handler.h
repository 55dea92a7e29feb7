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
#include "services/kvstore/store.h"

namespace capbroker::kvstore {

// The bytes of keys one list reply carries at most (each key counts its
// length and 8 bytes of list overhead): far below the 64 KiB message limit.
inline constexpr size_t kMaxListReplyBytes = 48 * 1024;

class KvstoreHandler : public RequestHandler {
 public:
  explicit KvstoreHandler(Store store) : store_(std::move(store)) {}

  // How the kvstore's ConnectionLoop must run: its requests carry no fds.
  static ConnectionLoop::Options LoopOptions() { return {.max_request_fds = 0}; }

  // Bad keys, values over the limit, and request kinds this version does
  // not know get an error reply.
  absl::Status Handle(Exchange& exchange) override;
  absl::Status Refuse(Exchange& exchange, const absl::Status& refusal) override;

 private:
  Store store_;
};

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_KVSTORE_HANDLER_H_

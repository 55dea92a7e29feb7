// CallService: one request and its reply on a connection to a hosted
// service, for the client libraries of services.
//
//   capnp::MallocMessageBuilder request;
//   request.initRoot<kv::Request>().initGet().setKey(...);
//   CB_RETURN_IF_ERROR(CallService<kv::Reply>(channel, request, {},
//       [&](kv::Reply::Reader reply) -> absl::Status { ... }));
//
// `Reply` is the service's reply struct, whose union has an `error :Error`
// member (error_reply.h): an error reply becomes its status. Replies carry
// no fds: any that arrive are closed and the reply is refused.
#ifndef CAPBROKER_SDK_SERVICE_CALL_SERVICE_H_
#define CAPBROKER_SDK_SERVICE_CALL_SERVICE_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "capnp/message.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_macros.h"
#include "sdk/service/error_reply.h"
#include "sdk/wire/channel.h"

namespace capbroker {

// Sends `request` with `fds` (borrowed) on `channel`, receives the reply,
// and calls `read(typename Reply::Reader)` (returning absl::Status) under
// CatchKj. kUnavailable when the service closed the connection, which it
// does to a request it cannot read. A reply the service sent before it
// closed the connection is read even when the request could not be sent
// (a service that refuses a connection says why, then closes it).
template <typename Reply, typename Read>
absl::Status CallService(wire::Channel& channel, capnp::MessageBuilder& request,
                         absl::Span<const int> fds, Read&& read) {
  absl::Status sent = channel.Send(request, fds);
  // A service that refused the connection (a limit) may have said why
  // before it closed it: that reply is still there to read.
  if (!sent.ok() && sent.code() != absl::StatusCode::kUnavailable) return sent;
  absl::StatusOr<wire::Incoming> incoming = channel.Receive();
  if (!incoming.ok()) {
    if (incoming.status().code() == absl::StatusCode::kUnavailable) {
      return absl::UnavailableError(
          absl::StrCat("the service closed the connection: ", incoming.status().message()));
    }
    return incoming.status();
  }
  if (!incoming->fds.empty()) {
    return absl::InternalError(
        absl::StrCat("the service sent ", incoming->fds.size(), " unexpected fds"));
  }
  return CatchKj("malformed service reply", [&]() -> absl::Status {
    typename Reply::Reader reply = incoming->reader->template getRoot<Reply>();
    if (reply.isError()) return ErrorToStatus(reply.getError());
    return std::forward<Read>(read)(reply);
  });
}

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_CALL_SERVICE_H_

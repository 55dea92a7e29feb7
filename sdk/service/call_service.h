// CallService: one request and its reply on a connection to a hosted
// service, for the client libraries of services.
//
//   wire::Channel channel(std::move(connection), wire::FdPolicy::kRefuse);
//   capnp::MallocMessageBuilder request;
//   request.initRoot<kv::Request>().initGet().setKey(...);
//   CB_RETURN_IF_ERROR(CallService<kv::Reply>(channel, request, {},
//       [&](kv::Reply::Reader reply) -> absl::Status { ... }));
//
// `Reply` is the service's reply struct, whose union has an `error :Error`
// member (error_reply.h): an error reply becomes its status. Replies carry
// no fds, and the channel takes none: it must be made with
// wire::FdPolicy::kRefuse, and each call turns fd-passing off on its socket
// (wire::RefuseFdsWhereSupported), so that a service's sendmsg with fds
// fails (EPERM) and nothing reaches this process; where the kernel cannot
// refuse them (before Linux 6.16), fds that come anyway are discarded
// uninstalled and the reply is refused. Either way no fd of a service's
// is ever installed here (a hostile one could send a file whose release
// blocks the thread that closes it: see unix_socket.h).
//
// A call waits for its reply as long as it takes, unless given a
// `timeout`, as ClientOptions::timeout bounds a Client's calls: a call past
// it returns kDeadlineExceeded and closes the channel (Close()), since a
// late answer would be read as the next request's; one that cannot even
// send its request in time (a service that reads nothing) returns
// kDeadlineExceeded with the channel as it was.
#ifndef CAPBROKER_SDK_SERVICE_CALL_SERVICE_H_
#define CAPBROKER_SDK_SERVICE_CALL_SERVICE_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "capnp/message.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_macros.h"
#include "sdk/service/error_reply.h"
#include "sdk/wire/channel.h"

namespace capbroker {
namespace call_service_internal {

// CallService's exchange: sends `request` with `fds` (borrowed) and
// receives the reply, checked to carry no fds, within `timeout`.
absl::StatusOr<wire::Incoming> Exchange(wire::Channel& channel, capnp::MessageBuilder& request,
                                        absl::Span<const int> fds, absl::Duration timeout);

}  // namespace call_service_internal

// Sends `request` with `fds` (borrowed) on `channel` (made with
// wire::FdPolicy::kRefuse: kFailedPrecondition otherwise, nothing sent),
// receives the reply, and calls `read(typename Reply::Reader)` (returning
// absl::Status) under CatchKj. kUnavailable when the service closed the
// connection, which it does to a request it cannot read; the channel is
// then closed too (channel.fd() is -1, as after a timeout), which is how a
// caller tells a lost connection from an error reply of code unavailable
// (a service may forward one, e.g. a file's read failing with EAGAIN); a
// later call on that closed channel is kUnavailable too. A reply the
// service sent before it closed the connection is read even when the
// request could not be sent (a service that refuses a connection says why,
// then closes it). kInternal for a reply that came with fds.
// kDeadlineExceeded past `timeout` (positive, or absl::InfiniteDuration(),
// the default: no limit; kInvalidArgument otherwise), as described above.
template <typename Reply, typename Read>
absl::Status CallService(wire::Channel& channel, capnp::MessageBuilder& request,
                         absl::Span<const int> fds, Read&& read,
                         absl::Duration timeout = absl::InfiniteDuration()) {
  CB_ASSIGN_OR_RETURN(wire::Incoming incoming,
                      call_service_internal::Exchange(channel, request, fds, timeout));
  return CatchKj("malformed service reply", [&]() -> absl::Status {
    typename Reply::Reader reply = incoming.reader->template getRoot<Reply>();
    if (reply.isError()) return ErrorToStatus(reply.getError());
    return std::forward<Read>(read)(reply);
  });
}

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_CALL_SERVICE_H_

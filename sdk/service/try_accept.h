// TryAccept: Service::Accept without blocking, for event loops.
//
// Client::NextIncoming blocks until an `incoming` event arrives, and it
// keeps events that arrived while it waited for a reply (to a request the
// service made once ready; the broker answers `ready` itself before it
// hands the service the connects that waited for its start) in a queue of
// its own, which polling the broker fd cannot see. TryAccept takes a
// queued event if there is one, else reads the socket without waiting.
#ifndef CAPBROKER_SDK_SERVICE_TRY_ACCEPT_H_
#define CAPBROKER_SDK_SERVICE_TRY_ACCEPT_H_

#include <optional>

#include "absl/status/statusor.h"
#include "sdk/client/client.h"

namespace capbroker {

// The next incoming connection on `broker` if one is queued or waiting on
// the socket; std::nullopt if none is. kUnavailable when the broker has
// closed the connection (the service should exit); other errors when the
// broker sent something that is not an event.
//
// How: the broker fd is made non-blocking for the one NextIncoming call
// and blocking again after it, so that the Client's own blocking calls
// (Acquire, Ready) keep working. A non-blocking Client reports "nothing to
// read" as kUnavailable, like end of stream; the two are told apart by the
// socket's hang-up state (POLLHUP/POLLRDHUP), which only a closed peer
// sets. Not thread-safe, like the Client.
absl::StatusOr<std::optional<IncomingConnection>> TryAccept(Client& broker);

// Whether an event loop must call TryAccept although epoll shows nothing on
// the broker fd: events the Client queued while it waited for a reply
// (before the loop ran, or since, during a call a handler made) would wait
// unserved until the broker next sent something; and a broker connection
// such a call closed (Client::Break, after a timeout or a protocol error)
// is gone from epoll, so only TryAccept's kUnavailable would end the loop.
bool AcceptWithoutReadiness(const Client& broker);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_TRY_ACCEPT_H_

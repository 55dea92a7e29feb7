// The messages the service host sends on connections it does not own: the
// deferred reply to a connect, and the `incoming` event to a service.
#ifndef CAPBROKER_BROKER_SERVICE_MESSAGES_H_
#define CAPBROKER_BROKER_SERVICE_MESSAGES_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "broker/server/dispatch.h"
#include "broker/server/service_directory.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::service {

// The grant that answers connect request `request_id`: `client_end` is the
// client's end of its connection to `service`, allowed by `principal`
// (Outcome::principal: the loop puts on record a grant it drops unsent).
server::Answer ConnectedAnswer(uint64_t request_id, absl::string_view service,
                               absl::string_view principal, UniqueFd client_end);

// The event that hands `service_end` to the service, with who is on the
// other end.
server::Answer IncomingAnswer(absl::string_view service,
                              const server::ConnectRequest& request, UniqueFd service_end);

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_MESSAGES_H_

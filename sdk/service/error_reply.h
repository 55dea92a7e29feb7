// Errors in the protocols of hosted services.
//
// Each service schema declares
//
//   struct Error {
//     code @0 :UInt32;   # an absl::StatusCode: the canonical (gRPC) codes
//     message @1 :Text;  # one line, for people
//   }
//
// and an `error @N :Error` member in its Reply union. The canonical codes
// have fixed numbers, so one pair of helpers serves every service and the
// code survives the trip: kInvalidArgument for a malformed request,
// kNotFound, kResourceExhausted for a limit, kFailedPrecondition for an
// argument of the wrong kind (a FIFO where a file is needed), kInternal for
// the service's own failures.
#ifndef CAPBROKER_SDK_SERVICE_ERROR_REPLY_H_
#define CAPBROKER_SDK_SERVICE_ERROR_REPLY_H_

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "capnp/blob.h"
#include "capnp/message.h"

namespace capbroker {

// Error messages are cut to this many bytes: a reply must stay far below
// the wire's message limit whatever a message quotes.
inline constexpr size_t kMaxErrorMessageBytes = 1024;

// Fills `error` (an Error builder) from `status`, which must not be OK.
template <typename ErrorBuilder>
void SetError(ErrorBuilder error, const absl::Status& status) {
  error.setCode(static_cast<uint32_t>(status.code()));
  absl::string_view message = status.message();
  message = message.substr(0, std::min(message.size(), kMaxErrorMessageBytes));
  error.setMessage(capnp::Text::Reader(message.data(), message.size()));
}

// Makes the root of `message` a `Reply` (a service's reply struct, whose
// union has an `error :Error` member) saying `status`, which must not be
// OK: what RequestHandler::Refuse answers in such a protocol.
template <typename Reply>
void SetErrorReply(capnp::MessageBuilder& message, const absl::Status& status) {
  SetError(message.initRoot<Reply>().initError(), status);
}

// The status an Error reader stands for; never OK (an error reply with code
// 0, or a code this build does not know, becomes kUnknown).
template <typename ErrorReader>
absl::Status ErrorToStatus(ErrorReader error) {
  uint32_t code = error.getCode();
  auto message = error.getMessage();
  absl::StatusCode status_code =
      code == 0 || code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)
          ? absl::StatusCode::kUnknown
          : static_cast<absl::StatusCode>(code);
  return absl::Status(status_code, absl::string_view(message.cStr(), message.size()));
}

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_ERROR_REPLY_H_

// The boundary between kj exceptions and absl::Status.
//
// Cap'n Proto reports malformed messages and misuse by throwing
// kj::Exception. capbroker code never throws; every place that calls into
// Cap'n Proto with data that could be bad wraps the call in CatchKj, which
// turns an exception into a status with `context` in front of its text.
#ifndef CAPBROKER_SDK_BASE_KJ_STATUS_H_
#define CAPBROKER_SDK_BASE_KJ_STATUS_H_

#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "kj/exception.h"

namespace capbroker {

// A status for `exception`: kInvalidArgument for FAILED (malformed input),
// kUnavailable for DISCONNECTED and OVERLOADED, kUnimplemented for
// UNIMPLEMENTED. The message is "<context>: <description>".
absl::Status KjExceptionToStatus(const kj::Exception& exception,
                                 absl::string_view context);

// Runs `fn` (returning absl::Status) and turns a kj exception it throws into
// a status. `fn` must not leave state half-changed when it throws.
template <typename Fn>
absl::Status CatchKj(absl::string_view context, Fn&& fn) {
  absl::Status result;
  kj::Maybe<kj::Exception> exception = kj::runCatchingExceptions(
      [&]() { result = std::forward<Fn>(fn)(); });
  KJ_IF_MAYBE(e, exception) { return KjExceptionToStatus(*e, context); }
  return result;
}

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_KJ_STATUS_H_

// Excerpt: untrusted text made safe to quote in a one-line message.
//
// Policy files and client requests may hold anything: control characters,
// invalid UTF-8, megabytes. Messages quote them through Excerpt so that an
// error is always one short, printable line (no log injection via '\n').
#ifndef CAPBROKER_BROKER_POLICY_EXCERPT_H_
#define CAPBROKER_BROKER_POLICY_EXCERPT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace capbroker {

// How many bytes of the text an excerpt shows by default.
inline constexpr size_t kExcerptBytes = 80;

// The first `max_bytes` of `text`, printable ASCII as is, other bytes as
// \xNN (sdk/base/escape.h, which capctl's lines use too), and "..." when
// cut.
std::string Excerpt(absl::string_view text, size_t max_bytes = kExcerptBytes);

// Excerpt(text) in single quotes: 'motd'.
std::string Quoted(absl::string_view text, size_t max_bytes = kExcerptBytes);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_EXCERPT_H_

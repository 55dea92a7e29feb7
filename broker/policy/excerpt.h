// Excerpt: untrusted text made safe to quote in a one-line message.
//
// Policy files and client requests may hold anything: control characters,
// invalid UTF-8, megabytes. Messages quote them through Excerpt so that an
// error is always one short line (no log injection via '\n', no escape
// sequence reaching a terminal), with text in any language kept as it is:
// a name or a comment in Greek is quoted in Greek.
#ifndef CAPBROKER_BROKER_POLICY_EXCERPT_H_
#define CAPBROKER_BROKER_POLICY_EXCERPT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace capbroker {

// How many bytes an excerpt shows by default, before "...".
inline constexpr size_t kExcerptBytes = 80;

// The start of `text`, escaped as EscapedKeepingUtf8 does (sdk/base/
// escape.h: printable ASCII and valid UTF-8 text as is; controls, C1
// controls, line separators, bidi controls and invalid UTF-8 as \xNN), at
// most `max_bytes` bytes of that, and "..." when cut. The cut falls between
// characters (AppendEscapedKeepingUtf8): never half of a UTF-8 character
// or of its \xNN form. Columns in FILE:LINE:COL count characters of the
// file (TextLocator), so what an excerpt shows does not move them.
std::string Excerpt(absl::string_view text, size_t max_bytes = kExcerptBytes);

// Excerpt(text) in single quotes: 'motd'.
std::string Quoted(absl::string_view text, size_t max_bytes = kExcerptBytes);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_EXCERPT_H_

// Minimal JSON output helpers for the audit log.
#ifndef CAPBROKER_BROKER_AUDIT_JSON_H_
#define CAPBROKER_BROKER_AUDIT_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace capbroker::audit {

// Appends `text` to `out` as a quoted JSON string. Valid UTF-8 is copied as
// it is, with control characters (\u00XX, \n, \t, \r), quotes and
// backslashes escaped. Control characters include the C1 range U+0080 to
// U+009F (\u0080 to \u009f), valid UTF-8 that terminals act on (CSI,
// U+009B, starts an escape sequence in xterm and VTE); the line and
// paragraph separators U+2028 and U+2029 are escaped too (\u2028, \u2029),
// since some line readers (Python's str.splitlines) split at them, and so
// are the bidirectional embeddings, overrides, isolates and marks (U+202A to
// U+202E, U+2066 to U+2069, U+200E, U+200F, U+061C: \u202e), which reorder
// what a terminal shows; the list is sdk/base/escape.h's (ActingCharacter),
// which every writer of text a person reads uses. Names and paths come from
// clients: an admin's `tail -f` of the log must not act on them. Escaped,
// they are still exactly what the client sent.
//
// A path or an executable name can hold any byte. Each byte XX (0x80 to
// 0xff) that is not part of a valid UTF-8 sequence is written \udcXX: the
// lone low surrogate U+DC00 + XX (U+DC80 to U+DCFF), as Python's
// "surrogateescape" error handler decodes such bytes (PEP 383). No valid
// UTF-8 string holds a surrogate, so the encoding is unambiguous: byte 0xe9
// (\udce9) can never read as a valid "é" (U+00E9), and names, paths and
// executables cannot pass for one another. The line is still JSON; Python's
// json.loads(line) and then str.encode("utf-8", "surrogateescape") give the
// exact bytes back. Decoders that do not keep lone surrogates (jq, Go) turn
// them into U+FFFD: compare the raw lines there.
void AppendJsonString(absl::string_view text, std::string& out);

}  // namespace capbroker::audit

#endif  // CAPBROKER_BROKER_AUDIT_JSON_H_

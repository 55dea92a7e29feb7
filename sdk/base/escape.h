// Escape: untrusted bytes made safe to show in a one-line message.
//
// Names, paths and reasons that reach a log line or a terminal may hold
// anything. A newline would split the line (log injection); an escape
// sequence would reach the terminal. Not only the ASCII controls: the C1
// controls U+0080 to U+009F are two bytes in UTF-8 (U+009B, CSI, is
// \xc2\x9b), and xterm and VTE act on them. So every byte outside printable
// ASCII (0x20 to 0x7e) is shown as \xNN, and invalid UTF-8 with it:
// Escaped. sdk/wire's and sdk/client's messages about a socket path, the
// broker's stderr notes on a loaded policy and the kvstore's and the
// journal's clients still use it.
//
// EscapedKeepingUtf8 is its variant for text that may be in any language,
// the rule for text shown to a person: valid UTF-8 that shows as text is
// kept, and the rest is escaped by the same rule. A hosted service's log
// lines (broker/service/output_lines.h), the broker's policy excerpts
// (broker/policy/excerpt.h), the messages of the policy loader and of the
// trusted path walk that quote a path or a symlink's target (broker/policy/
// policy_file.h, broker/util/trusted_path.h), what capctl shows of the
// broker's texts (names, paths, reasons), of `policy check`'s lines and of
// its own arguments, what capbrokerd and the hosted services (sdk/service/
// serve.h) show of their arguments and what sdk/client's statuses show of
// a broker's text (a grant that does not answer its request, an error for
// no request) (through sdk/base/shown_text.h), the file name in a policy's FILE:LINE:COL errors
// (broker/policy/diagnostics.h), and scanner_client's file names,
// signature names and reasons (services/scanner/scanner_cli.h) use it. It leaves its own output as it is
// (all of it is printable ASCII or text it keeps), so a reader that
// escapes text already escaped by its writer changes nothing.
// Machine-read formats (the audit log's and the journal's JSON) escape in
// their own form, with ActingCharacter below: the same characters.
#ifndef CAPBROKER_SDK_BASE_ESCAPE_H_
#define CAPBROKER_SDK_BASE_ESCAPE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace capbroker {

// Appends `text` to `out`, printable ASCII as is and every other byte as
// \xNN, as long as that adds at most `max_bytes` to `out`: the first byte
// whose form does not fit, and all after it, are left out. Returns how many
// bytes of `text` were appended.
size_t AppendEscaped(absl::string_view text, size_t max_bytes, std::string& out);

// All of `text`, escaped as AppendEscaped does: for a text whose length is
// bounded already (a path, at most PATH_MAX).
std::string Escaped(absl::string_view text);

// `text` with every byte escaped as Escaped does, except the bytes of valid
// UTF-8 characters beyond ASCII that show as text, which are kept as they
// are ("é", "ж", "中"). Escaped byte by byte, as \xNN: ASCII outside 0x20
// to 0x7e, invalid UTF-8 (a stray continuation byte, a truncated or overlong
// sequence, a surrogate, beyond U+10FFFF), the C1 controls U+0080 to U+009F
// (CSI, U+009B, is \xc2\x9b), the line and paragraph separators U+2028
// and U+2029, and the bidirectional embeddings, overrides and isolates
// (U+202A to U+202E, U+2066 to U+2069), which reorder what a terminal shows.
// At most 4 bytes per byte of `text`.
std::string EscapedKeepingUtf8(absl::string_view text);

// Appends `text` to `out`, escaped as EscapedKeepingUtf8 does, as long as
// that adds at most `max_bytes` to `out`, one character at a time: the
// first character (or invalid byte) whose form does not fit whole, and all
// after it, are left out, so that a cut never splits a UTF-8 character
// ("\xc3" of an "\xc3\xa9") nor the escaped form of one. Returns how many
// bytes of `text` were appended.
size_t AppendEscapedKeepingUtf8(absl::string_view text, size_t max_bytes, std::string& out);

// One unit of EscapedKeepingUtf8: `bytes` bytes of the text (a valid UTF-8
// character, or one byte of anything else) that are kept or escaped
// together, and `shown_bytes`, the size of their form (`bytes` when kept,
// 4 a byte when escaped).
struct EscapeUnit {
  size_t bytes = 0;
  size_t shown_bytes = 0;
};

// The unit at the start of `text`, which is not empty. The escaper's own
// reading of UTF-8: code that cuts a text it escapes (sdk/base/
// shown_text.h) cuts between these units, and escaping the text from any
// of their starts gives the same units as escaping it whole.
EscapeUnit FirstEscapeUnit(absl::string_view text);

// The valid UTF-8 characters that every writer of a log line or a terminal
// line escapes although they are valid, because a terminal or a line
// reader acts on them: the C1 controls U+0080 to U+009F (c2 80 to c2 9f;
// CSI, U+009B, starts an escape sequence in xterm and VTE, NEL, U+0085,
// ends a line), the line and paragraph separators U+2028 and U+2029
// (Python's str.splitlines splits at them), and the bidirectional
// embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069)
// and marks (U+200E, U+200F, U+061C), which reorder what a terminal shows.
// The length of such a character at the start of `text` (2 or 3), with its
// code point in `code_point`; 0 when `text` starts with anything else
// (another character, invalid UTF-8, nothing). The one list: used by
// EscapedKeepingUtf8 and by the audit log's and the journal's JSON writers
// (each with its own form: \xNN, \uNNNN).
size_t ActingCharacter(absl::string_view text, char32_t& code_point);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_ESCAPE_H_

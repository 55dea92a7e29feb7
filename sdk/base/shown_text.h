// Shown: how much of a text an error line shows (an argument capctl or
// capbrokerd echoes, a reason from the broker), and in what form.
//
// A line must stay short whatever it quotes: a 100 KB argument is refused,
// not echoed, and a reason quoting a path of 4095 bytes does not fill the
// terminal. But the end of a long text matters as much as its start: a
// reason ends with its cause and what to do ("...: No such file or
// directory", "write that, or set followSymlinks = true"), and a path with
// its file's name. So a text over the bound keeps both ends, its first and
// its last bytes, and says how many bytes between them were left out.
#ifndef CAPBROKER_SDK_BASE_SHOWN_TEXT_H_
#define CAPBROKER_SDK_BASE_SHOWN_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace capbroker {

// The bounds of what one error line shows, in bytes as shown (escaped):
// of an argument (a name, a path, a command) and of a reason.
inline constexpr size_t kMaxShownArgumentBytes = 256;
inline constexpr size_t kMaxShownReasonBytes = 512;

// `text` escaped as EscapedKeepingUtf8 does (sdk/base/escape.h): whole when
// that takes at most `max_bytes`; else its start and its end, each at most
// half of `max_bytes` as escaped, cut between characters as the escaper
// reads them (FirstEscapeUnit) and never inside a "\xHH" that `text`
// holds (a byte its writer escaped already), with
// "... (N bytes left out) ..." between them, N counting bytes of `text`.
// For example, a reason of 700 bytes at the bound of 512:
//   "open /srv/aaa... (188 bytes left out) ...aaa/x: No such file or directory"
std::string Shown(absl::string_view text, size_t max_bytes = kMaxShownArgumentBytes);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_SHOWN_TEXT_H_

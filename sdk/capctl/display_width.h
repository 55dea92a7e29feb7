// DisplayWidth: how many terminal columns a text takes, for capctl's
// tables (list, services), whose columns are padded to line up.
//
// A character is not a column: an East Asian wide character ("中") takes
// two, a combining mark (the U+0301 of "é" written as e + U+0301) none.
// Counting bytes or characters misaligns every row with such a name.
#ifndef CAPBROKER_SDK_CAPCTL_DISPLAY_WIDTH_H_
#define CAPBROKER_SDK_CAPCTL_DISPLAY_WIDTH_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace capbroker {

// The columns `text` takes on a terminal: wcwidth(3) of each code point,
// as the C.UTF-8 locale has it (a locale object of its own, used by this
// thread for the call alone: the process's locale, "C" in capctl, counts
// every byte beyond ASCII as unprintable). A byte that does not start a
// valid UTF-8 character, and a code point wcwidth calls unprintable, count
// one column. Where C.UTF-8 is missing (Debian 12 always has it), every
// code point counts one. Meant for text escaped for a terminal already
// (EscapedKeepingUtf8, sdk/base/escape.h): no controls.
size_t DisplayWidth(absl::string_view text);

// The same, counted as the locale named `locale` has it ("C.UTF-8" above),
// and one column per code point when there is no such locale: for tests of
// that fallback.
size_t DisplayWidth(absl::string_view text, const char* locale);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CAPCTL_DISPLAY_WIDTH_H_

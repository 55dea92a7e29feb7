#include "sdk/capctl/display_width.h"

#include <locale.h>
#include <wchar.h>

#include <algorithm>

#include "absl/cleanup/cleanup.h"

namespace capbroker {
namespace {

// One column per code point: every byte but UTF-8 continuation bytes.
size_t CodePoints(absl::string_view text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  }));
}

}  // namespace

size_t DisplayWidth(absl::string_view text) { return DisplayWidth(text, "C.UTF-8"); }

size_t DisplayWidth(absl::string_view text, const char* locale) {
  // A locale object, not setlocale: the process's locale stays as it is for
  // everything else capctl does (number formats, strerror), and no other
  // thread's is touched. Only LC_CTYPE matters to mbrtowc and wcwidth.
  locale_t utf8 = newlocale(LC_CTYPE_MASK, locale, static_cast<locale_t>(0));
  if (utf8 == static_cast<locale_t>(0)) return CodePoints(text);
  absl::Cleanup free_utf8 = [utf8] { freelocale(utf8); };
  locale_t before = uselocale(utf8);
  if (before == static_cast<locale_t>(0)) return CodePoints(text);
  absl::Cleanup restore = [before] { uselocale(before); };
  size_t columns = 0;
  mbstate_t state{};
  while (!text.empty()) {
    wchar_t c = 0;
    size_t length = mbrtowc(&c, text.data(), text.size(), &state);
    if (length == static_cast<size_t>(-1) || length == static_cast<size_t>(-2)) {
      // Invalid, or cut short: this byte alone, as a terminal shows it
      // (one replacement character), and a fresh start after it.
      ++columns;
      text.remove_prefix(1);
      state = mbstate_t{};
      continue;
    }
    const int width = wcwidth(c);
    columns += width < 0 ? 1 : static_cast<size_t>(width);
    text.remove_prefix(std::max<size_t>(length, 1));  // 0: a NUL, one byte
  }
  return columns;
}

}  // namespace capbroker

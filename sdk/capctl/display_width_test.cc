#include "sdk/capctl/display_width.h"

#include "gtest/gtest.h"

namespace capbroker {
namespace {

TEST(DisplayWidthTest, AsciiAndNarrowTextIsOneColumnACharacter) {
  EXPECT_EQ(DisplayWidth(""), 0u);
  EXPECT_EQ(DisplayWidth("motd"), 4u);
  EXPECT_EQ(DisplayWidth("donn\xc3\xa9" "es"), 7u);    // données
  EXPECT_EQ(DisplayWidth("\xce\xa9\xd0\xb6"), 2u);    // Ωж
  EXPECT_EQ(DisplayWidth("a\\x1b[2J"), 8u);           // as escaped: 8 ASCII bytes
}

// East Asian wide characters take two columns, combining marks none.
// Counting characters, as capctl did, gave 2 for "中文" and 2 for the
// e + U+0301 of a decomposed "é", and misaligned their rows.
TEST(DisplayWidthTest, WideCharactersTakeTwoColumnsCombiningMarksNone) {
  EXPECT_EQ(DisplayWidth("\xe4\xb8\xad\xe6\x96\x87"), 4u);           // 中文
  EXPECT_EQ(DisplayWidth("\xe3\x83\x87\xe3\x83\xbc\xe3\x82\xbf"), 6u);  // データ
  EXPECT_EQ(DisplayWidth("\xf0\x9f\x99\x82"), 2u);                     // U+1F642
  EXPECT_EQ(DisplayWidth("e\xcc\x81"), 1u);                            // e + U+0301
  EXPECT_EQ(DisplayWidth("a\xe4\xb8\xad" "b"), 4u);
}

// Not valid UTF-8 (capctl escapes it before, but the count must not
// depend on that): one column a byte, the rest still counted.
TEST(DisplayWidthTest, InvalidBytesCountOneColumnEach) {
  EXPECT_EQ(DisplayWidth("\xff\xe4\xb8\xad"), 3u);
  EXPECT_EQ(DisplayWidth("\xe4\xb8"), 2u);  // cut short
}

// Without C.UTF-8 (Debian 12 always has it; another system may not): one
// column per code point, as capctl counted before.
TEST(DisplayWidthTest, WithoutTheLocaleEachCodePointIsOneColumn) {
  EXPECT_EQ(DisplayWidth("\xe4\xb8\xad\xe6\x96\x87 e\xcc\x81", "no-such-locale.UTF-8"), 5u);
  EXPECT_EQ(DisplayWidth("\xe4\xb8\xad\xe6\x96\x87", "C.UTF-8"), 4u);
}

}  // namespace
}  // namespace capbroker

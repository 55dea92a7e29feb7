#include "broker/policy/excerpt.h"

#include <string>

#include "gtest/gtest.h"

namespace capbroker {
namespace {

TEST(ExcerptTest, KeepsPrintableAsciiAndEscapesTheRest) {
  EXPECT_EQ(Excerpt("\"motd\" x"), "\"motd\" x");
  EXPECT_EQ(Excerpt(std::string("a\nb\0c\xff", 6)), "a\\x0ab\\x00c\\xff");
  EXPECT_EQ(Quoted("motd"), "'motd'");
}

TEST(ExcerptTest, CutsLongText) {
  EXPECT_EQ(Excerpt("abcdef", 3), "abc...");
  EXPECT_EQ(Excerpt("abc", 3), "abc");
  EXPECT_EQ(Quoted(std::string(1 << 20, 'x')).size(), kExcerptBytes + 5);
}

// A name or a path in any language is quoted as it is; before, each of its
// bytes showed as \xNN ('\xce\xa3\xcf\x87...'). What acts on a
// terminal is still escaped.
TEST(ExcerptTest, KeepsTextInAnyLanguage) {
  EXPECT_EQ(Quoted("\xce\xa3\xcf\x87\xcf\x8c\xce\xbb\xce\xb9\xce\xbf"),
            "'\xce\xa3\xcf\x87\xcf\x8c\xce\xbb\xce\xb9\xce\xbf'");
  EXPECT_EQ(Excerpt("\xe6\x97\xa5\xe6\x9c\xac\n\x1b[2J\xc2\x9b\xff"),
            "\xe6\x97\xa5\xe6\x9c\xac\\x0a\\x1b[2J\\xc2\\x9b\\xff");
}

// The bound counts the bytes shown, and the cut falls between characters:
// never the first byte of an "\xc3\xa9" alone (which would show as
// \xc3), nor half of an escaped character.
TEST(ExcerptTest, CutsBetweenCharacters) {
  EXPECT_EQ(Excerpt("a\xc3\xa9\xc3\xa9", 4), "a\xc3\xa9...");
  EXPECT_EQ(Excerpt("a\xc3\xa9\xc3\xa9", 5), "a\xc3\xa9\xc3\xa9");
  EXPECT_EQ(Excerpt("a\xc2\x9b", 8), "a...");  // CSI is \xc2\x9b, 8 bytes
  std::string japanese;
  for (int i = 0; i < 100; ++i) japanese += "\xe6\x97\xa5";
  std::string shown;
  for (size_t i = 0; i < kExcerptBytes / 3; ++i) shown += "\xe6\x97\xa5";
  EXPECT_EQ(Quoted(japanese), "'" + shown + "...'");
}

}  // namespace
}  // namespace capbroker

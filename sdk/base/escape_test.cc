#include "sdk/base/escape.h"

#include <string>

#include "gtest/gtest.h"

namespace capbroker {
namespace {

TEST(EscapeTest, KeepsPrintableAsciiAndEscapesEveryOtherByte) {
  EXPECT_EQ(Escaped("\"motd\" x\\"), "\"motd\" x\\");
  EXPECT_EQ(Escaped(std::string("a\nb\0c\x7f\xff", 7)), "a\\x0ab\\x00c\\x7f\\xff");
  // U+009B (CSI), which terminals act on, and a character that is not a
  // control: both escaped, byte by byte.
  EXPECT_EQ(Escaped("\xc2\x9b" "2J \xc3\xa9"), "\\xc2\\x9b2J \\xc3\\xa9");
}

TEST(EscapeTest, AppendsWhatFitsWhole) {
  std::string out = "> ";
  EXPECT_EQ(AppendEscaped("ab\ncd", 6, out), 3u);  // "ab\x0a"; "c" would be the 7th
  EXPECT_EQ(out, "> ab\\x0a");
  out.clear();
  EXPECT_EQ(AppendEscaped("a\n", 4, out), 1u);  // no half of \x0a
  EXPECT_EQ(out, "a");
  out.clear();
  EXPECT_EQ(AppendEscaped("abc", 100, out), 3u);
  EXPECT_EQ(out, "abc");
}

}  // namespace
}  // namespace capbroker

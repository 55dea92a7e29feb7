#include "broker/audit/json.h"

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace capbroker::audit {
namespace {

std::string Json(absl::string_view s) {
  std::string out;
  AppendJsonString(s, out);
  return out;
}

TEST(AppendJsonStringTest, EscapesSpecials) {
  EXPECT_EQ(Json("a\"b\\c\nd\te"), R"("a\"b\\c\nd\te")");
  EXPECT_EQ(Json(std::string("\x01\x7f", 2)), R"("\u0001\u007f")");
}

TEST(AppendJsonStringTest, KeepsValidUtf8) {
  EXPECT_EQ(Json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\"");
}

// Valid UTF-8 that a terminal or a line reader acts on: the C1 controls
// (U+0080 to U+009F: CSI U+009B starts an escape sequence in xterm and VTE,
// NEL U+0085 ends a line) and the Unicode line and paragraph separators
// (U+2028, U+2029: Python's str.splitlines splits at them). A client names
// its capability and path, so they must not reach the log raw: escaped,
// nothing lost.
TEST(AppendJsonStringTest, EscapesC1ControlsAndUnicodeLineBreaks) {
  EXPECT_EQ(Json("a\xc2\x9b"), "\"a\\u009b\"");
  EXPECT_EQ(Json("a\xc2\x9b" "31mX"), R"("a\u009b31mX")");
  EXPECT_EQ(Json("\xc2\x80\xc2\x85\xc2\x9f"), R"("\u0080\u0085\u009f")");
  EXPECT_EQ(Json("x\xe2\x80\xa8y\xe2\x80\xa9z"), R"("x\u2028y\u2029z")");
  // Their neighbours are printable and stay as they are.
  EXPECT_EQ(Json("\xc2\xa0\xe2\x80\xa7\xe2\x80\xb0"), "\"\xc2\xa0\xe2\x80\xa7\xe2\x80\xb0\"");
}

// As reported: the bidirectional controls reorder what a terminal shows, so
// a client's path "job\u202e" reached an admin's `tail -f` raw and could
// make the rest of the line read backwards. Every writer escapes them
// (sdk/base/escape.h, ActingCharacter): the embeddings and overrides
// U+202A to U+202E, the isolates U+2066 to U+2069, and the marks U+200E,
// U+200F and U+061C.
TEST(AppendJsonStringTest, EscapesBidiControls) {
  EXPECT_EQ(Json("job\xe2\x80\xae"), R"("job\u202e")");
  EXPECT_EQ(Json("\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad\xe2\x80\xae"),
            R"("\u202a\u202b\u202c\u202d\u202e")");
  EXPECT_EQ(Json("\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9"),
            R"("\u2066\u2067\u2068\u2069")");
  EXPECT_EQ(Json("a\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c" "b"), R"("a\u200e\u200f\u061cb")");
  // Their neighbours are text and stay as they are.
  EXPECT_EQ(Json("\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa\xe2\x80\x8d\xd8\x9b"),
            "\"\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa\xe2\x80\x8d\xd8\x9b\"");
}

TEST(AppendJsonStringTest, EscapesInvalidUtf8AsLoneSurrogates) {
  EXPECT_EQ(Json("\xff"), R"("\udcff")");
  EXPECT_EQ(Json("\xc3"), R"("\udcc3")");              // truncated
  EXPECT_EQ(Json("\xc0\xaf"), R"("\udcc0\udcaf")");    // overlong '/'
  EXPECT_EQ(Json("\xed\xa0\x80"), R"("\udced\udca0\udc80")");  // surrogate
  EXPECT_EQ(Json("a\x80" "b"), R"("a\udc80b")");
}

// A string with an invalid byte never reads as a valid string: byte 0xe9
// alone is not "é" (U+00E9, which valid UTF-8 spells c3 a9), whichever way
// that is written.
TEST(AppendJsonStringTest, InvalidBytesCannotPassForValidText) {
  EXPECT_EQ(Json("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(Json("caf\xe9"), R"("caf\udce9")");
  EXPECT_NE(Json("caf\xe9"), R"("caf\u00e9")");
  // Every byte 0x80-0xff alone gets its own surrogate, outside what any
  // valid UTF-8 string decodes to (U+D800-U+DFFF).
  for (int b = 0x80; b <= 0xff; ++b) {
    std::string one(1, static_cast<char>(b));
    char expected[16];
    snprintf(expected, sizeof(expected), "\"\\udc%02x\"", b);
    EXPECT_EQ(Json(one), expected) << b;
  }
}

}  // namespace
}  // namespace capbroker::audit

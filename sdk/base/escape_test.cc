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

TEST(EscapeTest, KeepingUtf8KeepsTextInAnyLanguage) {
  EXPECT_EQ(EscapedKeepingUtf8("caf\xc3\xa9 \xd0\xb6 \xe4\xb8\xad \xf0\x9f\x99\x82 ok"),
            "caf\xc3\xa9 \xd0\xb6 \xe4\xb8\xad \xf0\x9f\x99\x82 ok");
  // ASCII as Escaped has it.
  EXPECT_EQ(EscapedKeepingUtf8(std::string("a\nb\0\t\x1b[2J\x7f", 10)),
            "a\\x0ab\\x00\\x09\\x1b[2J\\x7f");
}

TEST(EscapeTest, KeepingUtf8EscapesWhatActsOnATerminal) {
  // C1 controls: CSI (U+009B) and NEL (U+0085), the first and last of them.
  EXPECT_EQ(EscapedKeepingUtf8("a\xc2\x9b" "1A\xc2\x85\xc2\x80\xc2\x9f\xc2\xa0"),
            "a\\xc2\\x9b1A\\xc2\\x85\\xc2\\x80\\xc2\\x9f\xc2\xa0");
  // Line and paragraph separators, a bidi override and an isolate.
  EXPECT_EQ(EscapedKeepingUtf8("\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xae\xe2\x81\xa6"),
            "\\xe2\\x80\\xa8\\xe2\\x80\\xa9\\xe2\\x80\\xae\\xe2\\x81\\xa6");
  // The other bidi controls, the marks: left-to-right, right-to-left and
  // Arabic letter (U+200E, U+200F, U+061C); they too reorder what follows.
  EXPECT_EQ(EscapedKeepingUtf8("a\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c" "b"),
            "a\\xe2\\x80\\x8e\\xe2\\x80\\x8f\\xd8\\x9cb");
}

// The one list every writer shares (the JSON writers give it their own
// form): each character with its length and code point; nothing else.
TEST(EscapeTest, ActingCharacterFindsWhatEveryWriterEscapes) {
  struct Case {
    const char* text;
    size_t length;
    char32_t code_point;
  };
  for (const Case& c : {Case{"\xc2\x80", 2, 0x80}, Case{"\xc2\x9f" "a", 2, 0x9f},
                        Case{"\xe2\x80\xa8", 3, 0x2028}, Case{"\xe2\x80\xa9", 3, 0x2029},
                        Case{"\xe2\x80\xaa", 3, 0x202a}, Case{"\xe2\x80\xae", 3, 0x202e},
                        Case{"\xe2\x81\xa6", 3, 0x2066}, Case{"\xe2\x81\xa9", 3, 0x2069},
                        Case{"\xe2\x80\x8e", 3, 0x200e}, Case{"\xe2\x80\x8f", 3, 0x200f},
                        Case{"\xd8\x9c", 2, 0x061c}}) {
    char32_t code_point = 0;
    EXPECT_EQ(ActingCharacter(c.text, code_point), c.length) << c.text;
    EXPECT_EQ(code_point, c.code_point) << c.text;
  }
  for (const char* text : {"", "a", "\xc2\xa0", "\xe2\x80\xa7", "\xe2\x80\xaf", "\xe2\x81\xa5",
                           "\xe2\x81\xaa", "\xe2\x80\x8d", "\xd8\x9b", "\xc2", "\xe2\x80",
                           "\x9b", "\xc3\xa9"}) {
    char32_t code_point = 0;
    EXPECT_EQ(ActingCharacter(text, code_point), 0u) << text;
  }
}

TEST(EscapeTest, KeepingUtf8EscapesInvalidUtf8ByteByByte) {
  // A stray continuation byte, bytes that never start a character, an
  // overlong '/', a surrogate, beyond U+10FFFF, and a sequence cut short
  // (at the end, and by an ASCII byte): each invalid byte alone.
  EXPECT_EQ(EscapedKeepingUtf8("\x80|\xc0\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe4\xb8"),
            "\\x80|\\xc0\\xff|\\xc0\\xaf|\\xed\\xa0\\x80|\\xf4\\x90\\x80\\x80|\\xe4\\xb8");
  EXPECT_EQ(EscapedKeepingUtf8("\xc3" "a\xc3\xa9"), "\\xc3a\xc3\xa9");
  // The last character of each length, and the first beyond ASCII.
  EXPECT_EQ(EscapedKeepingUtf8("\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf"),
            "\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf");
}

// What it writes it keeps: escaping twice (a writer, then a reader that
// does not trust it) changes nothing; a backslash is never escaped.
TEST(EscapeTest, KeepingUtf8LeavesItsOwnOutputAsItIs) {
  for (const std::string& text :
       {std::string("a\nb\0c", 5), std::string("\\x0a \xc3\xa9 \xc2\x9b \xe2\x80\xae \xff"),
        std::string("\xe4\xb8\xad\x1b[2J\xed\xa0\x80")}) {
    const std::string once = EscapedKeepingUtf8(text);
    EXPECT_EQ(EscapedKeepingUtf8(once), once) << once;
  }
}

// The bound counts the bytes appended, and what does not fit whole is left
// out: a character kept ("\xc3\xa9", 2 bytes), an escaped one (CSI, 8
// bytes as \xc2\x9b), an invalid byte (4).
TEST(EscapeTest, KeepingUtf8AppendsWholeCharactersThatFit) {
  std::string out = "> ";
  EXPECT_EQ(AppendEscapedKeepingUtf8("a\xc3\xa9\xc3\xa9", 4, out), 3u);
  EXPECT_EQ(out, "> a\xc3\xa9");
  out.clear();
  EXPECT_EQ(AppendEscapedKeepingUtf8("a\xc2\x9b" "b", 8, out), 1u);
  EXPECT_EQ(out, "a");
  out.clear();
  EXPECT_EQ(AppendEscapedKeepingUtf8("a\xc2\x9b" "b", 10, out), 4u);
  EXPECT_EQ(out, "a\\xc2\\x9bb");
  out.clear();
  EXPECT_EQ(AppendEscapedKeepingUtf8("\xff\xe6\x97\xa5", 6, out), 1u);
  EXPECT_EQ(out, "\\xff");
  out.clear();
  EXPECT_EQ(AppendEscapedKeepingUtf8("\xe6\x97\xa5", 2, out), 0u);
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace capbroker

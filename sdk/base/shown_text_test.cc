#include "sdk/base/shown_text.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/escape.h"

namespace capbroker {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ShownTest, ATextWithinTheBoundIsShownWholeEscaped) {
  EXPECT_EQ(Shown("motd"), "motd");
  EXPECT_EQ(Shown("a\nb\x1b" "c"), "a\\x0ab\\x1bc");
  EXPECT_EQ(Shown("donn\xc3\xa9" "es"), "donn\xc3\xa9" "es");
  EXPECT_EQ(Shown(std::string(512, 'a'), 512), std::string(512, 'a'));
}

// The finding: a reason quoting a long path was cut at 512 bytes, and its
// end, the cause and what to do about it, was lost ("...ffff... (671
// bytes)"). Both ends are kept, and the middle said to be left out.
TEST(ShownTest, ALongTextKeepsBothEnds) {
  const std::string reason = absl::StrCat("open /srv/", std::string(650, 'f'),
                                          "/x: No such file or directory");
  const std::string shown = Shown(reason, 512);
  EXPECT_THAT(shown, StartsWith(absl::StrCat("open /srv/", std::string(246, 'f'), "... (")));
  EXPECT_THAT(shown, EndsWith("ff/x: No such file or directory"));
  EXPECT_THAT(shown, HasSubstr(absl::StrCat("... (", reason.size() - 512,
                                            " bytes left out) ...")));
  EXPECT_EQ(shown.size(), 512 + std::string("... (178 bytes left out) ...").size());
}

// The bound counts bytes as shown: 100 KB of control bytes is 256 of
// escaped form, 32 bytes of each end.
TEST(ShownTest, TheBoundIsOfTheEscapedForm) {
  const std::string controls(100000, '\x1b');
  std::string end;
  for (int i = 0; i < 32; ++i) end += "\\x1b";
  EXPECT_EQ(Shown(controls), absl::StrCat(end, "... (99936 bytes left out) ...", end));
}

// Neither end splits a character or its escaped form: "é" is two bytes,
// and a cut between them would show half of it.
TEST(ShownTest, NeitherEndSplitsACharacter) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "\xc3\xa9";  // é
  text += "x";                                       // 401 bytes: the end starts mid-character
  const std::string shown = Shown(text, 256);
  std::string head, tail;
  for (int i = 0; i < 64; ++i) head += "\xc3\xa9";
  for (int i = 0; i < 63; ++i) tail += "\xc3\xa9";
  EXPECT_EQ(shown, absl::StrCat(head, "... (146 bytes left out) ...", tail, "x"));

  // An escaped control at the cut: whole or not at all.
  const std::string controls = absl::StrCat(std::string(300, 'a'), "\n\n", std::string(127, 'b'));
  EXPECT_EQ(Shown(controls, 256),
            absl::StrCat(std::string(128, 'a'), "... (174 bytes left out) ...",
                         std::string(127, 'b')));
  // Stray continuation bytes are no character's: escaped one by one.
  EXPECT_EQ(Shown(std::string(300, '\x80'), 16), "\\x80\\x80... (296 bytes left out) ...\\x80\\x80");
}

// The finding: the end started where a lead byte said a character would,
// without checking that one was there. After "\xe2\x80", a sequence cut
// short, it skipped the lead byte of the "中" that follows and showed
// "\xb8\xad", bytes of a character the text does not hold alone.
TEST(ShownTest, AnEndAfterATruncatedSequenceStartsAtACharacter) {
  const std::string text =
      absl::StrCat(std::string(300, 'a'), "\xe2\x80" "\xe4\xb8\xad", std::string(118, 'b'));
  EXPECT_EQ(Shown(text, 256), absl::StrCat(std::string(128, 'a'), "... (173 bytes left out) ...",
                                           "\\x80\xe4\xb8\xad", std::string(118, 'b')));
}

// The finding: a reason the broker escaped already holds "\x0a" as four
// printable bytes, and a cut inside them showed "aaaa\x... (".
TEST(ShownTest, NeitherEndSplitsAnEscapeTheTextHolds) {
  const std::string text = absl::StrCat(std::string(126, 'a'), "\\x0a", std::string(200, 'c'),
                                        "\\x0A", std::string(126, 'b'));
  EXPECT_EQ(Shown(text, 256), absl::StrCat(std::string(126, 'a'), "... (208 bytes left out) ...",
                                           std::string(126, 'b')));
  // A backslash that starts no escape is one byte like any other.
  EXPECT_EQ(Shown(absl::StrCat(std::string(127, 'a'), "\\xg", std::string(200, 'b')), 256),
            absl::StrCat(std::string(127, 'a'), "\\... (74 bytes left out) ...",
                         std::string(128, 'b')));
}

// Where the escaper's units start: every start of a character (or of a
// byte escaped alone) as it reads `text` from its beginning.
std::vector<bool> UnitStarts(const std::string& text) {
  std::vector<bool> starts(text.size() + 1, false);
  for (size_t at = 0; at < text.size(); at += FirstEscapeUnit(absl::string_view(text).substr(at)).bytes) {
    starts[at] = true;
  }
  starts[text.size()] = true;
  return starts;
}

// Whether a "\xHH" of `text` has `at` inside it.
bool InsideAnEscape(const std::string& text, size_t at) {
  for (size_t back = 1; back <= 3 && back <= at; ++back) {
    const size_t from = at - back;
    if (from + 4 <= text.size() && text[from] == '\\' && text[from + 1] == 'x' &&
        absl::ascii_isxdigit(text[from + 2]) && absl::ascii_isxdigit(text[from + 3])) {
      return true;
    }
  }
  return false;
}

// Whatever the text, what is shown is the text escaped whole, or the
// escaped form of a head and of a tail of it, each cut between whole
// characters (as the escaper reads them, and escaping the pieces apart
// shows what escaping them together does) and outside any "\xHH", each
// within its half of the bound, with the bytes between them counted.
TEST(ShownTest, EveryOutputIsAnEscapedHeadAndTailOfWholeCharacters) {
  // Pieces that meet in every way: ASCII, controls, characters of 2, 3 and
  // 4 bytes, one that acts on a terminal (CSI), sequences cut short, stray
  // continuation bytes, bytes never valid, and escapes a writer made.
  const std::vector<std::string> pieces = {
      "a", "b", "\\", "x", "0", "\n", "\x1b", "\x80", "\xbf", "\xc3", "\xe2\x80", "\xf0\x9f",
      "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xc2\x9b", "\xff", "\xed\xa0\x80",
      "\\x0a", "\\x1B"};
  std::mt19937 random(20240611);  // fixed: a failure can be run again
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const size_t count = std::uniform_int_distribution<size_t>(0, 120)(random);
    for (size_t i = 0; i < count; ++i) {
      text += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(random)];
    }
    const size_t max_bytes = std::uniform_int_distribution<size_t>(8, 300)(random);
    SCOPED_TRACE(absl::StrCat("round ", round, ", max_bytes ", max_bytes, ": ",
                              Escaped(text)));
    const std::string shown = Shown(text, max_bytes);
    const std::string whole = EscapedKeepingUtf8(text);
    if (whole.size() <= max_bytes) {
      EXPECT_EQ(shown, whole);
      continue;
    }
    // No piece holds a '(' or a '.': the marker is the only one.
    const size_t marker = shown.find("... (");
    ASSERT_NE(marker, std::string::npos) << shown;
    const size_t marker_end = shown.find(" left out) ...", marker);
    ASSERT_NE(marker_end, std::string::npos) << shown;
    const std::string head = shown.substr(0, marker);
    const std::string tail = shown.substr(marker_end + std::string(" left out) ...").size());
    size_t left_out = 0;
    ASSERT_TRUE(absl::SimpleAtoi(
        shown.substr(marker + 5, shown.find(' ', marker + 5) - (marker + 5)), &left_out))
        << shown;
    EXPECT_GE(left_out, 1u);
    EXPECT_LE(head.size(), max_bytes / 2);
    EXPECT_LE(tail.size(), max_bytes - max_bytes / 2);
    const std::vector<bool> starts = UnitStarts(text);
    const auto whole_cut = [&](size_t at) {
      return starts[at] && !InsideAnEscape(text, at) &&
             EscapedKeepingUtf8(text.substr(0, at)) + EscapedKeepingUtf8(text.substr(at)) == whole;
    };
    bool found = false;
    for (size_t head_end = 0; head_end + left_out <= text.size() && !found; ++head_end) {
      const size_t tail_start = head_end + left_out;
      found = EscapedKeepingUtf8(text.substr(0, head_end)) == head &&
              EscapedKeepingUtf8(text.substr(tail_start)) == tail && whole_cut(head_end) &&
              whole_cut(tail_start);
    }
    EXPECT_TRUE(found) << shown;
  }
}

TEST(ShownTest, OneByteLeftOutIsSaidSo) {
  EXPECT_THAT(Shown(std::string(257, 'a')), HasSubstr("... (1 byte left out) ..."));
}

}  // namespace
}  // namespace capbroker

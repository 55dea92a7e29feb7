#include "sdk/capctl/shown_text.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

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

TEST(ShownTest, OneByteLeftOutIsSaidSo) {
  EXPECT_THAT(Shown(std::string(257, 'a')), HasSubstr("... (1 byte left out) ..."));
}

}  // namespace
}  // namespace capbroker

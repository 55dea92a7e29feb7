#include "services/journal/record.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/limits.h"

namespace capbroker::journal {
namespace {

TEST(RecordTest, OneJsonLineWithTheBrokersPeer) {
  Peer peer{"ops \"team\"", 1000, 100, 42};
  EXPECT_EQ(FormatRecord(9, 3, absl::FromUnixMillis(1763755262345), peer, "a\nb\x01\\"),
            "{\"run\":9,\"seq\":3,\"time\":\"2025-11-21T20:01:02.345Z\",\"principal\":\"ops "
            "\\\"team\\\"\",\"uid\":1000,\"gid\":100,\"pid\":42,\"text\":\"a\\nb\\u0001\\\\\"}\n");
}

// Valid UTF-8 that a terminal or a line reader acts on is escaped: the C1
// controls (U+0080 to U+009F; CSI U+009B starts an escape sequence in xterm
// and VTE) and U+2028, U+2029 (Python's str.splitlines splits at them).
TEST(RecordTest, EscapesC1ControlsAndUnicodeLineBreaks) {
  EXPECT_EQ(JsonString("a\xc2\x9b"), "\"a\\u009b\"");
  EXPECT_EQ(JsonString("\xc2\x80\xc2\x85\xc2\x9f"), R"("\u0080\u0085\u009f")");
  EXPECT_EQ(JsonString("x\xe2\x80\xa8y\xe2\x80\xa9z"), R"("x\u2028y\u2029z")");
  // Their neighbours stay as they are.
  EXPECT_EQ(JsonString("\xc2\xa0\xe2\x80\xa7\xe2\x80\xb0 \xc3\xa9"),
            "\"\xc2\xa0\xe2\x80\xa7\xe2\x80\xb0 \xc3\xa9\"");
}

// The bidirectional controls too (embeddings, overrides, isolates and the
// marks U+200E, U+200F, U+061C): they reorder what a terminal shows of the
// line (sdk/base/escape.h, ActingCharacter).
TEST(RecordTest, EscapesBidiControls) {
  EXPECT_EQ(JsonString("job\xe2\x80\xae"), R"("job\u202e")");
  EXPECT_EQ(JsonString("\xe2\x80\xaa\xe2\x81\xa6\xe2\x81\xa9\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c"),
            R"("\u202a\u2066\u2069\u200e\u200f\u061c")");
}

// MaxRecordLineBytes bounds every record the journal writes: the text's
// longest escapes take six bytes a byte (a control byte), three (a C1
// control), two (a bidirectional control, U+2028); a plain byte takes one.
TEST(RecordTest, NoRecordIsLongerThanMaxRecordLineBytes) {
  EXPECT_EQ(MaxRecordLineBytes(), 25127u);
  const Peer peer{std::string(wire::kMaxNameBytes, '"'), UINT32_MAX, UINT32_MAX, INT32_MIN};
  const absl::Time now = absl::FromUnixMillis(1763755262345);
  for (absl::string_view unit : {"\x1b", "\"", "\xc2\x9b", "\xe2\x80\xa8", "x"}) {
    std::string text;
    while (text.size() + unit.size() <= kMaxRecordTextBytes) text.append(unit.data(), unit.size());
    ASSERT_OK(CheckRecordText(text));
    EXPECT_LE(FormatRecord(UINT64_MAX, UINT64_MAX, now, peer, text).size(), MaxRecordLineBytes())
        << unit;
  }
}

TEST(RecordTest, TextMustBeBoundedUtf8) {
  EXPECT_OK(CheckRecordText(""));
  EXPECT_OK(CheckRecordText("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  for (const char* bad : {"\xff", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "ok\x80"}) {
    EXPECT_THAT(CheckRecordText(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_OK(CheckRecordText(std::string(kMaxRecordTextBytes, 'x')));
  EXPECT_THAT(CheckRecordText(std::string(kMaxRecordTextBytes + 1, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace capbroker::journal

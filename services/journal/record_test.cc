#include "services/journal/record.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::journal {
namespace {

TEST(RecordTest, OneJsonLineWithTheBrokersPeer) {
  Peer peer{"ops \"team\"", 1000, 100, 42};
  EXPECT_EQ(FormatRecord(9, 3, absl::FromUnixMillis(1763755262345), peer, "a\nb\x01\\"),
            "{\"run\":9,\"seq\":3,\"time\":\"2025-11-21T20:01:02.345Z\",\"principal\":\"ops "
            "\\\"team\\\"\",\"uid\":1000,\"gid\":100,\"pid\":42,\"text\":\"a\\nb\\u0001\\\\\"}\n");
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

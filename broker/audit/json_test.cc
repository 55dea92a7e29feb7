#include "broker/audit/json.h"

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

TEST(AppendJsonStringTest, EscapesInvalidUtf8) {
  EXPECT_EQ(Json("\xff"), R"("\u00ff")");
  EXPECT_EQ(Json("\xc3"), R"("\u00c3")");              // truncated
  EXPECT_EQ(Json("\xc0\xaf"), R"("\u00c0\u00af")");    // overlong '/'
  EXPECT_EQ(Json("\xed\xa0\x80"), R"("\u00ed\u00a0\u0080")");  // surrogate
}

}  // namespace
}  // namespace capbroker::audit

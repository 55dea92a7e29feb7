#include "services/kvstore/key_name.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::kvstore {
namespace {

TEST(KeyNameTest, EveryKeyBecomesAPlainNameAndBack) {
  for (std::string key : {std::string("a"), std::string("../../etc/passwd"),
                          std::string("/abs"), std::string("\0\xff/.", 4), std::string(120, '.')}) {
    std::string name = KeyFileName(key);
    EXPECT_EQ(name.find_first_not_of("k.0123456789abcdef"), std::string::npos) << name;
    EXPECT_LE(name.size(), 255u);
    EXPECT_EQ(KeyOfFileName(name), key);
  }
}

TEST(KeyNameTest, OtherNamesAreNotKeys) {
  for (const char* name : {".", "..", "k.", "k.a", "k.AB", "k.zz", "t.123", "kab", "x.61"}) {
    EXPECT_EQ(KeyOfFileName(name), std::nullopt) << name;
  }
}

TEST(KeyNameTest, KeysAreBounded) {
  EXPECT_THAT(CheckKey(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(CheckKey(std::string(120, 'k')));
  EXPECT_THAT(CheckKey(std::string(121, 'k')), StatusIs(absl::StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace capbroker::kvstore

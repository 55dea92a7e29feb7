#include "services/kvstore/value_limit.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::kvstore {
namespace {

TEST(CheckValueTest, AcceptsUpToTheLimitAndSaysTheRuleBeyond) {
  EXPECT_OK(CheckValue(""));
  EXPECT_OK(CheckValue(std::string(kMaxValueBytes, '\0')));
  EXPECT_THAT(CheckValue(std::string(kMaxValueBytes + 1, 'v')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       ::testing::Eq("value of 32769 bytes; at most 32768")));
}

}  // namespace
}  // namespace capbroker::kvstore

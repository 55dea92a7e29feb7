#include "sdk/wire/request_text.h"

#include <string>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/limits.h"

namespace capbroker::wire {
namespace {

TEST(RequestTextTest, TakesTextsUpToTheirLimit) {
  EXPECT_OK(CheckCapabilityName(std::string(kMaxNameBytes, 'a')));
  EXPECT_OK(CheckDirectoryName(std::string(kMaxNameBytes, 'a')));
  EXPECT_OK(CheckBeneathPath(std::string(kMaxPathBytes, 'a')));
  EXPECT_OK(CheckServiceName(std::string(kMaxNameBytes, 'a')));
}

TEST(RequestTextTest, NamesTheFieldAndItsLimit) {
  EXPECT_THAT(CheckCapabilityName(std::string(kMaxNameBytes + 1, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "capability name is 65 bytes; at most 64"));
  EXPECT_THAT(CheckDirectoryName(std::string(100000, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "directory name is 100000 bytes; at most 64"));
  EXPECT_THAT(CheckBeneathPath(std::string(kMaxPathBytes + 1, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, "path is 4096 bytes; at most 4095"));
  EXPECT_THAT(CheckServiceName(std::string(kMaxNameBytes + 1, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, "service name is 65 bytes; at most 64"));
}

TEST(RequestTextTest, RefusesEmptyTexts) {
  EXPECT_THAT(CheckCapabilityName(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "capability name is empty"));
  EXPECT_THAT(CheckDirectoryName(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "directory name is empty"));
  EXPECT_THAT(CheckBeneathPath(""), StatusIs(absl::StatusCode::kInvalidArgument, "path is empty"));
  EXPECT_THAT(CheckServiceName(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "service name is empty"));
}

}  // namespace
}  // namespace capbroker::wire

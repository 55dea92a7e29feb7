#include "sdk/wire/error_code.h"

#include "gtest/gtest.h"

namespace capbroker::wire {
namespace {

TEST(ErrorCodeTest, RoundTripsEveryMappedCode) {
  for (absl::StatusCode code :
       {absl::StatusCode::kInvalidArgument, absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kNotFound, absl::StatusCode::kResourceExhausted,
        absl::StatusCode::kUnavailable, absl::StatusCode::kUnimplemented,
        absl::StatusCode::kFailedPrecondition, absl::StatusCode::kInternal}) {
    EXPECT_EQ(FromErrorCode(ToErrorCode(code)), code);
  }
  EXPECT_EQ(ToErrorCode(absl::StatusCode::kDataLoss), schema::ErrorCode::INTERNAL);
  EXPECT_EQ(FromErrorCode(static_cast<schema::ErrorCode>(999)),
            absl::StatusCode::kUnknown);
  EXPECT_EQ(ErrorCodeName(schema::ErrorCode::PERMISSION_DENIED), "permissionDenied");
}

}  // namespace
}  // namespace capbroker::wire

// GoogleTest matchers for absl::Status and absl::StatusOr (test only).
//
// abseil 20220623 ships none. Usage:
//   EXPECT_THAT(DoThing(), IsOk());
//   EXPECT_THAT(Open("x"), StatusIs(absl::StatusCode::kNotFound,
//                                   HasSubstr("no capability")));
//   ASSERT_OK_AND_ASSIGN(UniqueFd fd, Open("y"));
#ifndef CAPBROKER_SDK_BASE_STATUS_MATCHERS_H_
#define CAPBROKER_SDK_BASE_STATUS_MATCHERS_H_

#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_macros.h"

namespace capbroker {
namespace testing_internal {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace testing_internal

MATCHER(IsOk, "is OK") {
  const absl::Status& status = testing_internal::GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = testing_internal::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

MATCHER_P(StatusIs, code, "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = testing_internal::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

}  // namespace capbroker

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::capbroker::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::capbroker::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                  \
  ASSERT_OK_AND_ASSIGN_IMPL_(CB_STATUS_CONCAT_(cb_test_so_, __LINE__), \
                             lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  ASSERT_THAT(statusor, ::capbroker::IsOk());           \
  lhs = std::move(statusor).value()

#endif  // CAPBROKER_SDK_BASE_STATUS_MATCHERS_H_

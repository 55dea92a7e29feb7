#include "sdk/base/kj_status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kj/debug.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

TEST(CatchKjTest, PassesStatusThrough) {
  EXPECT_OK(CatchKj("ctx", [] { return absl::OkStatus(); }));
  EXPECT_THAT(CatchKj("ctx", [] { return absl::NotFoundError("gone"); }),
              StatusIs(absl::StatusCode::kNotFound, "gone"));
}

TEST(CatchKjTest, TurnsFailedIntoInvalidArgument) {
  absl::Status status = CatchKj("parsing request", []() -> absl::Status {
    KJ_FAIL_REQUIRE("bad pointer");
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("parsing request: ")));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("bad pointer")));
}

TEST(CatchKjTest, TurnsDisconnectedIntoUnavailable) {
  absl::Status status = CatchKj("reading", []() -> absl::Status {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "peer gone"));
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("peer gone")));
}

}  // namespace
}  // namespace capbroker

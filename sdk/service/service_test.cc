#include "sdk/service/service.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::ElementsAre;

TEST(ParseServiceLayoutTest, ReadsGrantsAndBrokerFd) {
  ASSERT_OK_AND_ASSIGN(ServiceLayout layout,
                       ParseServiceLayout("2", "1", "db:data", "5", 1));
  EXPECT_THAT(layout.grants, ElementsAre(Pair("db", 3), Pair("data", 4)));
  EXPECT_EQ(layout.broker_fd, 5);
}

TEST(ParseServiceLayoutTest, NoGrants) {
  ASSERT_OK_AND_ASSIGN(ServiceLayout layout,
                       ParseServiceLayout(nullptr, nullptr, nullptr, "3", 77));
  EXPECT_TRUE(layout.grants.empty());
  EXPECT_EQ(layout.broker_fd, 3);
}

TEST(ParseServiceLayoutTest, HostileValuesAreRefusedWithTheirName) {
  auto error = [](const char* fds, const char* pid, const char* names, const char* broker) {
    return ParseServiceLayout(fds, pid, names, broker, 1).status();
  };
  EXPECT_THAT(error(nullptr, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD is not set")));
  EXPECT_THAT(error("x", "1", "a", "4"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("LISTEN_FDS=\"x\"")));
  EXPECT_THAT(error("-1", "1", "a", "4"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   HasSubstr("LISTEN_FDS=\"-1\"")));
  EXPECT_THAT(error("99999", "1", "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LISTEN_FDS")));
  EXPECT_THAT(error("1", nullptr, "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LISTEN_PID is not")));
  EXPECT_THAT(error("1", "2", "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("another process's")));
  EXPECT_THAT(error("2", "1", "a", "5"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names 1 fds")));
  // The broker fd cannot sit on a grant, nor on stdio.
  EXPECT_THAT(error("1", "1", "a", "3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD=\"3\"")));
  EXPECT_THAT(error(nullptr, nullptr, nullptr, "1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD")));
  EXPECT_THAT(error(nullptr, nullptr, nullptr, "3junk"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD")));
}

}  // namespace
}  // namespace capbroker

#include "broker/sandbox/credentials.h"

#include <unistd.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(CredentialsTest, KeptGroupsNameEveryGroupButTheServicesOwn) {
  EXPECT_EQ(KeptGroupsEntry({}, 1000), "");
  EXPECT_EQ(KeptGroupsEntry({1000}, 1000), "");
  EXPECT_EQ(KeptGroupsEntry({1000, 1000}, 1000), "");
  EXPECT_THAT(KeptGroupsEntry({42}, 1000),
              StartsWith("supplementary groups: the service keeps the broker's group 42, "));
  std::string entry = KeptGroupsEntry({1000, 42, 27, 42}, 1000);
  EXPECT_THAT(entry, StartsWith("supplementary groups: the service keeps the broker's groups "
                                "42 27, and every file they may read or write"));
  EXPECT_THAT(entry, HasSubstr("run the broker as a user without supplementary groups"));
}

TEST(CredentialsTest, SupplementaryGroupsAreTheCallers) {
  ASSERT_OK_AND_ASSIGN(std::vector<gid_t> groups, SupplementaryGroups());
  EXPECT_EQ(static_cast<int>(groups.size()), getgroups(0, nullptr));
}

}  // namespace
}  // namespace capbroker::sandbox

#include "broker/sandbox/credentials.h"

#include <unistd.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(CredentialsTest, KeptGroupsNameEveryGroupButTheServicesOwn) {
  for (GroupsKept cause : {GroupsKept::kNotRoot, GroupsKept::kSetgroupsDenied}) {
    EXPECT_EQ(KeptGroupsEntry({}, 1000, cause), "");
    EXPECT_EQ(KeptGroupsEntry({1000}, 1000, cause), "");
    EXPECT_EQ(KeptGroupsEntry({1000, 1000}, 1000, cause), "");
    EXPECT_THAT(KeptGroupsEntry({42}, 1000, cause),
                StartsWith("supplementary groups: the service keeps the broker's group 42, "));
    EXPECT_THAT(KeptGroupsEntry({1000, 42, 27, 42}, 1000, cause),
                StartsWith("supplementary groups: the service keeps the broker's groups "
                           "42 27, and every file they may read or write ("));
  }
}

// The entry says why the groups are kept, and what to do, by cause: a root
// broker is not told it is not root.
TEST(CredentialsTest, KeptGroupsSayWhyTheyAreKept) {
  std::string not_root = KeptGroupsEntry({42}, 1000, GroupsKept::kNotRoot);
  EXPECT_THAT(not_root, HasSubstr("(a broker that is not root cannot drop them; in a user "
                                  "namespace they show as the overflow group): run the broker "
                                  "as a user without supplementary groups"));
  EXPECT_THAT(not_root, Not(HasSubstr("setgroups")));
  std::string denied = KeptGroupsEntry({42}, 1000, GroupsKept::kSetgroupsDenied);
  EXPECT_THAT(denied, HasSubstr("(the broker's user namespace denies setgroups "
                                "(/proc/self/setgroups says deny), so even a root broker cannot "
                                "drop them; "));
  EXPECT_THAT(denied, HasSubstr("start the broker without supplementary groups, or in a user "
                                "namespace that allows setgroups"));
  EXPECT_THAT(denied, Not(HasSubstr("not root")));
}

TEST(CredentialsTest, SupplementaryGroupsAreTheCallers) {
  ASSERT_OK_AND_ASSIGN(std::vector<gid_t> groups, SupplementaryGroups());
  EXPECT_EQ(static_cast<int>(groups.size()), getgroups(0, nullptr));
}

}  // namespace
}  // namespace capbroker::sandbox

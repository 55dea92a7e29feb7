#include "broker/sandbox/credentials.h"

#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::RunInChild;
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

// What the caller's groups are, set in a child (setgroups needs root, and
// changes the process for good), as SupplementaryGroups reads them back:
// "42 27 1000", "none", or an error.
std::string GroupsReadBackAfterSetting(const std::vector<gid_t>& groups) {
  return RunInChild([&]() -> std::string {
           if (setgroups(groups.size(), groups.data()) != 0) {
             return absl::StrCat("setgroups: ", strerror(errno));
           }
           absl::StatusOr<std::vector<gid_t>> read = SupplementaryGroups();
           if (!read.ok()) return read.status().ToString();
           return read->empty() ? "none" : absl::StrJoin(*read, " ");
         })
      .output;
}

TEST(CredentialsTest, SupplementaryGroupsAreTheCallers) {
  ASSERT_EQ(geteuid(), 0u) << "sets its groups";
  // The kernel keeps them sorted (groups_sort), as getgroups gives them.
  EXPECT_EQ(GroupsReadBackAfterSetting({42, 27, 1000}), "27 42 1000");
  EXPECT_EQ(GroupsReadBackAfterSetting({4242}), "4242");
  EXPECT_EQ(GroupsReadBackAfterSetting({}), "none");
}

}  // namespace
}  // namespace capbroker::sandbox

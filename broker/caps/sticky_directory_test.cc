#include "broker/caps/sticky_directory.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::caps {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uid_t kBroker = 0;
constexpr uid_t kDirectoryOwner = 0;
constexpr uid_t kOther = 65534;

struct stat Directory(mode_t mode, uid_t owner = kDirectoryOwner) {
  struct stat st = {};
  st.st_mode = S_IFDIR | mode;
  st.st_uid = owner;
  return st;
}

struct stat File(uid_t owner) {
  struct stat st = {};
  st.st_mode = S_IFREG | 0666;
  st.st_uid = owner;
  return st;
}

// Another's file in /tmp (01777), or in a group's shared sticky directory
// (01770), is refused, naming it, its owner and the rule, and the fix.
TEST(StickyDirectoryTest, RefusesAnothersFileWhereOthersMayWrite) {
  EXPECT_THAT(CheckStickyDirectoryOwner(Directory(01777), File(kOther), kBroker,
                                        "open /tmp/report"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("open /tmp/report: is owned by uid 65534"),
                             HasSubstr("sticky directory that everyone may write to (mode 1777"),
                             HasSubstr("fs.protected_regular"), HasSubstr("chown"))));
  EXPECT_THAT(CheckStickyDirectoryOwner(Directory(01770), File(kOther), kBroker, "f"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("its group may write")));
}

TEST(StickyDirectoryTest, AllowsWhatNobodyElseCouldHavePlanted) {
  // The broker's own file, and the directory owner's.
  EXPECT_OK(CheckStickyDirectoryOwner(Directory(01777), File(kBroker), kBroker, "f"));
  EXPECT_OK(CheckStickyDirectoryOwner(Directory(01777, kOther), File(kOther), kBroker, "f"));
  // A directory that is not sticky (its writers may replace any file: the
  // policy trusts them), or that no one else may write to.
  EXPECT_OK(CheckStickyDirectoryOwner(Directory(0777), File(kOther), kBroker, "f"));
  EXPECT_OK(CheckStickyDirectoryOwner(Directory(01755), File(kOther), kBroker, "f"));
  // A broker not run as root, opening its own user's file.
  EXPECT_OK(CheckStickyDirectoryOwner(Directory(01777), File(kOther), kOther, "f"));
}

}  // namespace
}  // namespace capbroker::caps

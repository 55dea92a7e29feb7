#include "broker/sandbox/outcome.h"

#include <string>
#include <vector>

#include "broker/sandbox/landlock.h"
#include "broker/sandbox/protection.h"
#include "broker/sandbox/settings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker::sandbox {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The `missing` entries for Landlock's gaps at `abi` (landlock::UncoveredAt).
std::vector<std::string> GapEntries(int abi, bool tcp_wanted, bool host_tree = false) {
  std::vector<std::string> entries;
  for (const std::string& gap : landlock::UncoveredAt(abi, tcp_wanted, host_tree)) {
    entries.push_back(MissingEntry(Protection::kLandlock, gap));
  }
  return entries;
}

// The seccomp filter, wanted, refuses TCP sockets itself: below ABI 6 only
// the scoping is a gap, at ABI 3 as at 5.
TEST(OutcomeTest, LandlockBelowAbi6WithTheFilterLacksScopingOnly) {
  for (int abi : {3, 5}) {
    Outcome outcome{Protections{}};
    outcome.MarkLandlockGaps(abi, /*deny_tcp=*/true);
    std::vector<std::string> entries = outcome.TakeEntries();
    EXPECT_EQ(entries, GapEntries(abi, /*tcp_wanted=*/false)) << "ABI " << abi;
    ASSERT_EQ(entries.size(), 1u) << "ABI " << abi;
    EXPECT_THAT(entries[0], HasSubstr("does not scope abstract unix sockets and signals"));
    // Landlock stays in force: the gap is an entry only.
    EXPECT_TRUE(outcome.wanted(Protection::kLandlock));
  }
}

// With the filter missing, Landlock is the only layer to deny TCP: ABI 3
// has no TCP rules, ABI 5 has.
TEST(OutcomeTest, LandlockBelowAbi4WithoutTheFilterAlsoLacksTcpRules) {
  for (int abi : {3, 5}) {
    Outcome outcome{Protections{}};
    outcome.MarkMissing(static_cast<int>(Protection::kSystemCallFilter), "filter: missing");
    outcome.MarkLandlockGaps(abi, /*deny_tcp=*/true);
    std::vector<std::string> expected = {"filter: missing"};
    for (std::string& gap : GapEntries(abi, /*tcp_wanted=*/true)) expected.push_back(gap);
    EXPECT_EQ(outcome.TakeEntries(), expected) << "ABI " << abi;
  }
  EXPECT_EQ(GapEntries(3, true).size(), 2u);
  EXPECT_EQ(GapEntries(5, true).size(), 1u);
}

// A service whose families allow inet or inet6 has no TCP rule to miss.
TEST(OutcomeTest, NoTcpGapWhenTheServiceMayUseTcp) {
  Outcome outcome{Protections{}};
  outcome.MarkMissing(static_cast<int>(Protection::kSystemCallFilter), "filter: missing");
  outcome.MarkLandlockGaps(3, /*deny_tcp=*/false);
  EXPECT_THAT(outcome.TakeEntries(),
              ElementsAre("filter: missing", GapEntries(3, /*tcp_wanted=*/false)[0]));
}

TEST(OutcomeTest, NoGapAtAbi6) {
  Outcome outcome{Protections{}};
  outcome.MarkMissing(static_cast<int>(Protection::kSystemCallFilter), "filter: missing");
  outcome.MarkLandlockGaps(6, /*deny_tcp=*/true);
  EXPECT_THAT(outcome.TakeEntries(), ElementsAre("filter: missing"));
}

// Below ABI 3 Landlock does not control truncate(2): a gap only where the
// service sees the host's files, its minimal root off or found missing
// (whose read-only mounts refuse it otherwise).
TEST(OutcomeTest, LandlockBelowAbi3LacksTruncateOnlyWithoutTheMinimalRoot) {
  Outcome with_root{Protections{}};
  with_root.MarkLandlockGaps(2, /*deny_tcp=*/false);
  EXPECT_EQ(with_root.TakeEntries(), GapEntries(2, false, /*host_tree=*/false));

  Protections off;
  off.protect_system = Requirement::kOff;
  Outcome without_root{off};
  without_root.MarkLandlockGaps(2, /*deny_tcp=*/false);
  std::vector<std::string> entries = without_root.TakeEntries();
  EXPECT_EQ(entries, GapEntries(2, false, /*host_tree=*/true));
  EXPECT_THAT(entries, ::testing::Contains(HasSubstr("does not control truncate(2)")));

  Protections best_effort;
  best_effort.protect_system = Requirement::kBestEffort;
  Outcome root_missing{best_effort};
  ASSERT_TRUE(root_missing.Unavailable(Protection::kProtectSystem, "no mount namespace").ok());
  root_missing.MarkLandlockGaps(2, /*deny_tcp=*/false);
  EXPECT_THAT(root_missing.TakeEntries(),
              ::testing::Contains(HasSubstr("does not control truncate(2)")));

  Outcome abi3{off};
  abi3.MarkLandlockGaps(3, /*deny_tcp=*/false);
  EXPECT_THAT(abi3.TakeEntries(),
              ::testing::Not(::testing::Contains(HasSubstr("truncate"))));
}

// Landlock off, or found missing: nothing of it is in force, so no gap.
TEST(OutcomeTest, NoGapWhenLandlockIsNotInForce) {
  Protections off;
  off.landlock = Requirement::kOff;
  Outcome turned_off{off};
  turned_off.MarkLandlockGaps(3, /*deny_tcp=*/true);
  EXPECT_THAT(turned_off.TakeEntries(), IsEmpty());

  Protections best_effort;
  best_effort.landlock = Requirement::kBestEffort;
  Outcome missing{best_effort};
  ASSERT_TRUE(missing.Unavailable(Protection::kLandlock, "not supported by this kernel").ok());
  missing.MarkLandlockGaps(3, /*deny_tcp=*/true);
  EXPECT_THAT(missing.TakeEntries(),
              ElementsAre(MissingEntry(Protection::kLandlock, "not supported by this kernel")));
}

}  // namespace
}  // namespace capbroker::sandbox

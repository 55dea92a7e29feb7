#include "broker/sandbox/rlimits.h"

#include <sys/resource.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DefaultProcessesTest, ServiceThatSetsNeitherLimitGetsTheDefault) {
  EXPECT_EQ(DefaultProcesses(ResourceLimits{}, RLIM_INFINITY), kDefaultProcesses);
  EXPECT_EQ(DefaultProcesses(ResourceLimits{}, kDefaultProcesses + 1), kDefaultProcesses);
}

TEST(DefaultProcessesTest, TheBrokersLowerHardLimitIsTheDefault) {
  EXPECT_EQ(DefaultProcesses(ResourceLimits{}, 100), 100u);
}

TEST(DefaultProcessesTest, ProcessesSetMeansNoDefault) {
  ResourceLimits limits;
  limits.processes = 2000;
  EXPECT_EQ(DefaultProcesses(limits, RLIM_INFINITY), 0u);
}

// pidsMax bounds the service's processes (its cgroup's): a default
// RLIMIT_NPROC would hold a service with pidsMax = 2000 to 512, silently.
TEST(DefaultProcessesTest, PidsMaxSetMeansNoDefault) {
  ResourceLimits limits;
  limits.pids_max = 2000;
  EXPECT_EQ(DefaultProcesses(limits, RLIM_INFINITY), 0u);
  EXPECT_EQ(DefaultProcesses(limits, 100), 0u);
}

TEST(NoDefaultProcessesEntryTest, QuotesTheDefaultThatWouldHaveApplied) {
  std::string entry = NoDefaultProcessesEntry(100, 1000);
  EXPECT_EQ(entry,
            "processes: no default limit (100) without privateUsers: RLIMIT_NPROC would count "
            "every process of uid 1000 on the host; set limits.processes or pidsMax");
  EXPECT_THAT(entry, Not(HasSubstr("512")));
}

}  // namespace
}  // namespace capbroker::sandbox

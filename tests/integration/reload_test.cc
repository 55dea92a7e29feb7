// SIGHUP reloads the policy: established connections are decided by the new
// policy from then on; a policy with any error is refused whole and the old
// one stays; shared memory of an unchanged capability stays shared. SIGHUP
// also reopens the audit log, for rotation.
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBefore[] = R"(
( capabilities = [
    ( name = "board", memory = ( size = 4096, shared = true ) ),
    ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "t", match = ( uid = $UID ), grants = [ "board" ] ) ] )
)";

constexpr char kAfter[] = R"(
( capabilities = [
    ( name = "board", memory = ( size = 4096, shared = true ) ),
    ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "t", match = ( uid = $UID ), grants = [ "board", "scratch" ] ) ] )
)";

// Most status round trips to wait for the broker to act on a signal: each
// is an event (a reply); the signal is normally handled before the first.
constexpr int kMaxRoundTrips = 10000;

// Sends SIGHUP and waits, through status round trips, until the broker has
// either installed a new policy or refused one.
BrokerStatus ReloadAndWait(testing::BrokerProcess& broker, Client& client) {
  absl::StatusOr<BrokerStatus> before = client.Status();
  EXPECT_OK(before);
  EXPECT_EQ(kill(broker.pid(), SIGHUP), 0);
  for (int i = 0; i < kMaxRoundTrips; ++i) {
    absl::StatusOr<BrokerStatus> now = client.Status();
    EXPECT_OK(now);
    if (!now.ok()) break;
    if (now->policy_generation != before->policy_generation ||
        now->policy_reload_failures != before->policy_reload_failures) {
      return *now;
    }
  }
  ADD_FAILURE() << "the broker did not act on SIGHUP";
  return *before;
}

TEST(ReloadTest, NewPolicyAppliesToOpenConnections) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kBefore));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  EXPECT_THAT(client.Acquire("scratch"), StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_OK_AND_ASSIGN(Capability before, client.Acquire("board"));
  ASSERT_EQ(pwrite(before.fd.get(), "kept", 4, 0), 4);

  ASSERT_OK(broker->RewritePolicy(kAfter));
  BrokerStatus status = ReloadAndWait(*broker, client);
  EXPECT_EQ(status.policy_generation, 2u);
  EXPECT_EQ(status.policy_reload_failures, 0u);

  EXPECT_OK(client.Acquire("scratch"));  // same connection, new policy
  ASSERT_OK_AND_ASSIGN(Capability after, client.Acquire("board"));
  char buf[4];
  ASSERT_EQ(pread(after.fd.get(), buf, 4, 0), 4);
  EXPECT_EQ(std::string(buf, 4), "kept");  // the same shared memfd
}

TEST(ReloadTest, BrokenPolicyIsRefusedWholeAndTheOldOneStays) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kAfter));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  // Valid text up to a misspelled field: nothing of it may take effect.
  ASSERT_OK(broker->RewritePolicy(
      "( capabilities = [ ( name = \"board\", memory = ( size = 4096 ) ) ],\n"
      "  principals = [ ( name = \"t\", match = ( uid = $UID ), grantz = [ ] ) ] )\n"));
  BrokerStatus status = ReloadAndWait(*broker, client);
  EXPECT_EQ(status.policy_generation, 1u);
  EXPECT_EQ(status.policy_reload_failures, 1u);
  EXPECT_THAT(status.last_reload_error, HasSubstr("policy.capnp:2:"));
  EXPECT_THAT(status.last_reload_error, HasSubstr("grantz"));
  EXPECT_OK(client.Acquire("scratch"));  // the old policy still decides
  EXPECT_OK(client.Acquire("board"));
  EXPECT_TRUE(status.last_reload_refused);
  EXPECT_GE(status.last_reload_seconds_ago, 0);
}

// Status reports the last reload, not the last refusal: a refusal that a
// later reload made good is only counted.
TEST(ReloadTest, ASuccessfulReloadClearsTheRefusalBeforeIt) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kBefore));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_OK_AND_ASSIGN(BrokerStatus start, client.Status());
  EXPECT_EQ(start.last_reload_seconds_ago, -1);  // none yet
  ASSERT_OK(broker->RewritePolicy("( capabilities = [ ( name = \"board\", reed = 1 ) ] )"));
  BrokerStatus refused = ReloadAndWait(*broker, client);
  EXPECT_TRUE(refused.last_reload_refused);
  EXPECT_THAT(refused.last_reload_error, HasSubstr("reed"));
  ASSERT_OK(broker->RewritePolicy(kAfter));
  BrokerStatus installed = ReloadAndWait(*broker, client);
  EXPECT_EQ(installed.policy_generation, 2u);
  EXPECT_EQ(installed.policy_reload_failures, 1u);  // still counted
  EXPECT_FALSE(installed.last_reload_refused);
  EXPECT_EQ(installed.last_reload_error, "");
  EXPECT_GE(installed.last_reload_seconds_ago, 0);
}

// A reload is checked against the broker as it runs: a broker without
// --cgroup refuses a new policy that sets memoryMax, and keeps the old one.
TEST(ReloadTest, CgroupLimitsWithoutACgroupAreRefused) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kBefore));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_OK(broker->RewritePolicy(
      "( capabilities = [ ( name = \"board\", memory = ( size = 4096 ) ) ],\n"
      "  services = [ ( name = \"svc\", command = [ \"/bin/true\" ],\n"
      "                 limits = ( memoryMax = 1048576 ) ) ] )\n"));
  BrokerStatus status = ReloadAndWait(*broker, client);
  EXPECT_EQ(status.policy_generation, 1u);
  EXPECT_EQ(status.policy_reload_failures, 1u);
  EXPECT_THAT(status.last_reload_error,
              HasSubstr("policy.capnp:3:41: service 'svc': memoryMax needs a cgroup, and "
                        "this broker has none: start capbrokerd with --cgroup DIR"));
  EXPECT_OK(client.Acquire("board"));  // the old policy still decides
}

TEST(ReloadTest, PolicyMadeWritableByOthersIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kBefore));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_OK(broker->RewritePolicy(kAfter));
  ASSERT_EQ(chmod((broker->dir() + "/policy.capnp").c_str(), 0666), 0);
  BrokerStatus status = ReloadAndWait(*broker, client);
  EXPECT_EQ(status.policy_reload_failures, 1u);
  EXPECT_THAT(status.last_reload_error, HasSubstr("writable by other users"));
  EXPECT_THAT(client.Acquire("scratch"), StatusIs(absl::StatusCode::kPermissionDenied));
}

// logrotate's way: rename the log, then SIGHUP. Grants after the signal are
// recorded in a new file at the path; the renamed file keeps the earlier
// ones and gets nothing more.
TEST(ReloadTest, AuditLogIsReopenedForRotation) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kAfter));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_OK(client.Acquire("board"));
  std::string rotated = broker->dir() + "/audit.log.1";
  ASSERT_EQ(rename(broker->audit_path().c_str(), rotated.c_str()), 0);
  ReloadAndWait(*broker, client);
  ASSERT_OK(client.Acquire("scratch"));

  std::string old_log = testing::ReadWholeFile(rotated);
  std::string new_log = broker->AuditLog();
  EXPECT_THAT(old_log, HasSubstr(R"("capability":"board")"));
  EXPECT_THAT(old_log, Not(HasSubstr(R"("capability":"scratch")")));
  EXPECT_THAT(new_log, HasSubstr(R"("capability":"scratch")"));
  EXPECT_THAT(new_log, Not(HasSubstr(R"("capability":"board")")));
}

// A symlink at the log's path when the broker reopens it is refused (it
// could point anywhere); the broker says so and keeps recording in the file
// it had open.
TEST(ReloadTest, AuditLogReopenRefusesASymlink) {
  testing::BrokerOptions options;
  options.capture_stderr = true;
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kAfter, options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  std::string rotated = broker->dir() + "/audit.log.1";
  std::string elsewhere = broker->dir() + "/elsewhere";
  ASSERT_EQ(rename(broker->audit_path().c_str(), rotated.c_str()), 0);
  ASSERT_EQ(symlink(elsewhere.c_str(), broker->audit_path().c_str()), 0);
  ReloadAndWait(*broker, client);
  ASSERT_OK(client.Acquire("scratch"));

  EXPECT_THAT(testing::ReadWholeFile(rotated), HasSubstr(R"("capability":"scratch")"));
  EXPECT_EQ(access(elsewhere.c_str(), F_OK), -1);  // never created
  EXPECT_THAT(broker->Stderr(), HasSubstr("going on in the file open before"));
  EXPECT_THAT(broker->Stderr(), HasSubstr("is a symlink"));
}

}  // namespace
}  // namespace capbroker

// SIGHUP reloads the policy: established connections are decided by the new
// policy from then on; a policy with any error is refused whole and the old
// one stays; shared memory of an unchanged capability stays shared. SIGHUP
// also reopens the audit log, for rotation.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "broker/policy/policy_parser.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
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
// either installed a new policy or refused one. A refusal must leave the
// broker's fds as they were before the signal: whatever the reload opened
// (the policy file, the directories on its path) is closed again, however
// far it got before it was refused. (An installed policy may hold fds of
// its own, so only a refusal is checked.)
BrokerStatus ReloadAndWait(testing::BrokerProcess& broker, Client& client) {
  absl::StatusOr<BrokerStatus> before = client.Status();
  EXPECT_OK(before);
  if (!before.ok()) return BrokerStatus();
  // Counted after the round trip above: the broker is idle, between events.
  const int fds_before = broker.OpenFds();
  EXPECT_GT(fds_before, 0);
  EXPECT_EQ(kill(broker.pid(), SIGHUP), 0);
  for (int i = 0; i < kMaxRoundTrips; ++i) {
    absl::StatusOr<BrokerStatus> now = client.Status();
    EXPECT_OK(now);
    if (!now.ok()) break;
    if (now->policy_reload_failures != before->policy_reload_failures) {
      // The reload was handled before this reply was sent: the broker has
      // one thread, and it is idle again.
      EXPECT_EQ(broker.OpenFds(), fds_before)
          << "the refused reload left fds open in the broker: " << now->last_reload_error;
    }
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

// A policy file an attacker or an accident filled with what is no policy
// (binary garbage, a NUL byte, more than kMaxPolicyBytes, nesting deeper
// than the parser allows) is refused on SIGHUP with a message that says
// what is wrong and where; the broker goes on serving under the old policy,
// with no fd left open by the refused reload (ReloadAndWait checks that).
TEST(ReloadTest, HostileFilesAreRefusedAndTheOldPolicyServes) {
  std::string deep;  // the 33rd level starts at column 16 * 18 + 1
  for (int i = 0; i < 100; ++i) deep += "( capabilities = [";
  const struct {
    std::string text;
    std::string why;
  } kCases[] = {
      {"\x7f" "ELF\x02\x01\x01\xff\xfe",
       "policy.capnp:1:1: syntax error: unexpected character '\\x7f'"},
      {std::string("( capabilities = [ ]\0)", 22),
       "policy.capnp:1:21: syntax error: NUL byte in the text; a policy is plain text"},
      {std::string(kMaxPolicyBytes + 1, ' '),
       absl::StrCat("policy.capnp is ", kMaxPolicyBytes + 1, " bytes; the limit is ",
                    kMaxPolicyBytes, " bytes (1 MiB)")},
      {deep, "policy.capnp:1:289: syntax error: nesting deeper than 32 levels"},
  };
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kBefore));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  uint64_t failures = 0;
  for (const auto& hostile : kCases) {
    SCOPED_TRACE(hostile.why);
    ASSERT_OK(broker->RewritePolicy(hostile.text));
    BrokerStatus status = ReloadAndWait(*broker, client);
    EXPECT_EQ(status.policy_generation, 1u);
    EXPECT_EQ(status.policy_reload_failures, ++failures);
    EXPECT_TRUE(status.last_reload_refused);
    EXPECT_THAT(status.last_reload_error, HasSubstr(hostile.why));
    // Served, under the old policy: "board" granted, "scratch" not.
    EXPECT_OK(client.Acquire("board"));
    EXPECT_THAT(client.Acquire("scratch"), StatusIs(absl::StatusCode::kPermissionDenied));
  }
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

// kBefore with a service whose open-file limit is `open_files`; with
// `scratch` granted too when `grant_scratch`, to tell the policies apart.
std::string WithServiceOpenFiles(int open_files, bool grant_scratch) {
  return absl::StrCat(
      "( capabilities = [\n"
      "    ( name = \"board\", memory = ( size = 4096, shared = true ) ),\n"
      "    ( name = \"scratch\", memory = ( size = 4096 ) ) ],\n"
      "  principals = [ ( name = \"t\", match = ( uid = $UID ), grants = [ \"board\"",
      grant_scratch ? ", \"scratch\"" : "", " ] ) ],\n"
      "  services = [ ( name = \"svc\", command = [ \"/bin/true\" ],\n"
      "                 limits = ( openFiles = ", open_files, " ) ) ] )\n");
}

// A reload is checked against the broker's hard rlimits as they are when it
// reloads, read anew (prlimit may have lowered them since the start): a
// service's limit above them is refused, naming the limit, and the old
// policy stays.
TEST(ReloadTest, ServiceLimitsAboveTheBrokersHardLimitAreRefused) {
  testing::BrokerOptions options;
  options.fd_limit = 512;
  ASSERT_OK_AND_ASSIGN(auto broker,
                       testing::BrokerProcess::StartWith(WithServiceOpenFiles(400, false), options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  auto above = [](int value, int hard) {
    return absl::StrCat("policy.capnp:6:41: service 'svc': openFiles ", value,
                        " is above the broker's hard RLIMIT_NOFILE, ", hard,
                        ", which no service's limit can exceed");
  };

  ASSERT_OK(broker->RewritePolicy(WithServiceOpenFiles(600, true)));
  BrokerStatus refused = ReloadAndWait(*broker, client);
  EXPECT_EQ(refused.policy_generation, 1u);
  EXPECT_EQ(refused.policy_reload_failures, 1u);
  EXPECT_THAT(refused.last_reload_error, HasSubstr(above(600, 512)));
  // The old policy still decides.
  EXPECT_THAT(client.Acquire("scratch"), StatusIs(absl::StatusCode::kPermissionDenied));

  // Lowered under the running broker: 400, which it started with, is now
  // above it too.
  const rlimit lowered{256, 384};
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, &lowered, nullptr), 0) << errno;
  ASSERT_OK(broker->RewritePolicy(WithServiceOpenFiles(400, true)));
  BrokerStatus refused_again = ReloadAndWait(*broker, client);
  EXPECT_EQ(refused_again.policy_generation, 1u);
  EXPECT_EQ(refused_again.policy_reload_failures, 2u);
  EXPECT_THAT(refused_again.last_reload_error, HasSubstr(above(400, 384)));
  EXPECT_THAT(client.Acquire("scratch"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_OK(client.Acquire("board"));
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

// A reload refused over a symlink of root's whose target holds a newline
// and an ESC sequence (the policy names a path through it): the broker's
// stderr line and the status capctl shows quote the target escaped, on one
// line, escaped once (a backslash stays one backslash). Before, the ESC
// and the newline reached both raw.
TEST(ReloadTest, ARefusalQuotesWhatIsOnDiskEscaped) {
  testing::BrokerOptions options;
  options.capture_stderr = true;
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kBefore, options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  const std::string target = broker->dir() + "/t\x1b[2J\nx";
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  UniqueFd file(open((target + "/f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(file.valid());
  ASSERT_EQ(symlink("t\x1b[2J\nx", (broker->dir() + "/link").c_str()), 0);
  // The broker resolves from the kernel's caches alone (RESOLVE_CACHED),
  // and following a link whose atime is due for an update (relatime: not
  // after its ctime, as for a new link until a later clock tick) writes it,
  // which a cached-only lookup may not do: EAGAIN, and a path it cannot
  // tell is accepted, as the README says. The link's atime is set ahead so
  // that no update is due, as for a link that has been there a while.
  const timespec times[2] = {{time(nullptr) + 3600, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, (broker->dir() + "/link").c_str(), times, AT_SYMLINK_NOFOLLOW),
            0);
  ASSERT_OK(broker->RewritePolicy(absl::StrCat(
      "( capabilities = [ ( name = \"board\", file = ( path = \"", broker->dir(),
      "/link/f\", access = read ) ) ] )\n")));
  BrokerStatus status = ReloadAndWait(*broker, client);
  EXPECT_EQ(status.policy_reload_failures, 1u);
  const std::string shown = absl::StrCat("(it resolves to ", broker->dir(), "/t\\x1b[2J\\x0ax/f)");
  EXPECT_THAT(status.last_reload_error, HasSubstr(shown));
  EXPECT_THAT(status.last_reload_error, Not(HasSubstr("\x1b")));
  EXPECT_THAT(status.last_reload_error, Not(HasSubstr("\n")));
  const std::string err = broker->Stderr();
  const size_t line = err.find("capbrokerd: SIGHUP: keeping the current policy: ");
  ASSERT_NE(line, std::string::npos) << err;
  EXPECT_THAT(err.substr(line, err.find('\n', line) - line), HasSubstr(shown));
  EXPECT_THAT(err, Not(HasSubstr("\x1b")));
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
  ASSERT_OK_AND_ASSIGN(BrokerStatus status, client.Status());
  EXPECT_EQ(status.audit_log_error, "");

  std::string old_log = testing::ReadWholeFile(rotated);
  std::string new_log = broker->AuditLog();
  EXPECT_THAT(old_log, HasSubstr(R"("capability":"board")"));
  EXPECT_THAT(old_log, Not(HasSubstr(R"("capability":"scratch")")));
  EXPECT_THAT(new_log, HasSubstr(R"("capability":"scratch")"));
  EXPECT_THAT(new_log, Not(HasSubstr(R"("capability":"board")")));
}

// Log rotation under way: a broker (its stderr kept) whose audit log was
// just renamed to audit.log.1, as logrotate does before its SIGHUP, and a
// client of it.
class AuditRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::BrokerOptions options;
    options.capture_stderr = true;
    ASSERT_OK_AND_ASSIGN(broker_, testing::BrokerProcess::StartWith(kAfter, options));
    ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker_->socket_path()));
    client_.emplace(std::move(client));
    rotated_ = broker_->dir() + "/audit.log.1";
    ASSERT_EQ(rename(broker_->audit_path().c_str(), rotated_.c_str()), 0);
  }

  // After a refused reopen: the broker grants, records the grant in the
  // file it had open, and said why it kept it.
  void ExpectItWentOnInTheOldFile(absl::string_view why) {
    ASSERT_OK(client_->Acquire("scratch"));
    EXPECT_THAT(testing::ReadWholeFile(rotated_), HasSubstr(R"("capability":"scratch")"));
    EXPECT_THAT(broker_->Stderr(), HasSubstr("going on in the file open before"));
    EXPECT_THAT(broker_->Stderr(), HasSubstr(std::string(why)));
    // capctl status says so too (the test runs as root).
    ASSERT_OK_AND_ASSIGN(BrokerStatus status, client_->Status());
    EXPECT_THAT(status.audit_log_error, HasSubstr(std::string(why)));
  }

  std::unique_ptr<testing::BrokerProcess> broker_;
  std::optional<Client> client_;
  std::string rotated_;
};

// A symlink at the log's path when the broker reopens it is refused (it
// could point anywhere); the broker says so and keeps recording in the file
// it had open.
TEST_F(AuditRotationTest, ReopenRefusesASymlink) {
  std::string elsewhere = broker_->dir() + "/elsewhere";
  ASSERT_EQ(symlink(elsewhere.c_str(), broker_->audit_path().c_str()), 0);
  ReloadAndWait(*broker_, *client_);
  ExpectItWentOnInTheOldFile("is a symlink");
  EXPECT_EQ(access(elsewhere.c_str(), F_OK), -1);  // never created
}

// As reported: at rotation a user puts a FIFO at the log's path before the
// SIGHUP. An open for writing would wait for a reader, with every client
// waiting on the broker; it is refused at once, the broker says why and
// keeps recording in the file it had. Past a safety deadline the test opens
// the FIFO for reading, which releases a broker blocked in that open, so
// that the test fails rather than hangs. The deadline only matters to a
// broker that stalls (it would wait for a reader forever): one that refuses
// the FIFO answers as soon as it runs, so the deadline is generous, to stay
// out of reach of a loaded machine (it was 10 s).
constexpr std::chrono::seconds kStalledReopenDeadline{60};

TEST_F(AuditRotationTest, ReopenRefusesAFifoWithoutStalling) {
  ASSERT_EQ(mkfifo(broker_->audit_path().c_str(), 0600), 0);
  std::future<BrokerStatus> reloaded =
      std::async(std::launch::async, [&] { return ReloadAndWait(*broker_, *client_); });
  bool in_time = reloaded.wait_for(kStalledReopenDeadline) == std::future_status::ready;
  UniqueFd reader;  // kept to the end: a broker that opened the FIFO writes into it
  if (!in_time) {
    reader.reset(open(broker_->audit_path().c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  }
  reloaded.get();
  EXPECT_TRUE(in_time) << "the broker stalled in the open of the FIFO";
  ExpectItWentOnInTheOldFile("is a FIFO, not a regular file");
}

// The same FIFO with its owner reading it: the broker would write the
// audit trail into their pipe, which they can stop reading at any time.
TEST_F(AuditRotationTest, ReopenRefusesAFifoSomeoneReads) {
  ASSERT_EQ(mkfifo(broker_->audit_path().c_str(), 0600), 0);
  UniqueFd reader(open(broker_->audit_path().c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader.valid()) << errno;
  ReloadAndWait(*broker_, *client_);
  ExpectItWentOnInTheOldFile("is a FIFO, not a regular file");
  // Nothing to read: EAGAIN, or end of file once the broker's refused open
  // of the FIFO has been closed.
  char byte;
  EXPECT_LE(read(reader.get(), &byte, 1), 0) << "the broker wrote into the FIFO";
}

// A new file at the path that other users may read (the log records every
// user's requests) is refused: the broker says so, capctl status shows it,
// and it goes on in the file it had.
TEST_F(AuditRotationTest, ReopenRefusesAFileOthersCanRead) {
  std::string path = broker_->audit_path();
  UniqueFd created(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ASSERT_TRUE(created.valid()) << errno;
  ASSERT_EQ(fchmod(created.get(), 0644), 0);
  ReloadAndWait(*broker_, *client_);
  ExpectItWentOnInTheOldFile("is readable by other users (mode 0644)");
  EXPECT_THAT(broker_->Stderr(), HasSubstr("chmod o-r " + path));
  EXPECT_EQ(testing::ReadWholeFile(path), "");
}

}  // namespace
}  // namespace capbroker

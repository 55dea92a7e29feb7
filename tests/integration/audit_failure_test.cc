// Fail closed: a grant whose audit line cannot be written is not delivered.
// Denials still go out (they hand out nothing), the broker keeps serving,
// and grants resume once the log can be written again.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;
using testing::BrokerOptions;
using testing::BrokerProcess;

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ),
                   ( name = "board", memory = ( size = 4096, shared = true ) ) ],
  principals = [ ( name = "t", match = ( uid = $UID ), grants = [ "scratch", "board" ] ) ] )
)";

// Whole grant lines in `log`.
int GrantLines(const std::string& log) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StartsWith(line, "{") && absl::EndsWith(line, "}") &&
        absl::StrContains(line, R"("event":"grant")")) {
      ++n;
    }
  }
  return n;
}

TEST(AuditFailureTest, GrantIsWithheldWhenItsLineCannotBeWritten) {
  BrokerOptions options;
  options.audit_log_full = true;  // every write fails
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::StartWith(kPolicy, options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  int fds_before = broker->OpenFds();
  for (const char* name : {"scratch", "board"}) {  // a new memfd; a shared one
    EXPECT_THAT(client.Acquire(name),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr("could not write this grant's audit line")))
        << name;
  }
  // A denial hands out nothing: it is still answered as a denial.
  EXPECT_THAT(client.Acquire("nope"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(BrokerStatus status, client.Status());
  EXPECT_EQ(status.grants, 0u);
  EXPECT_EQ(broker->OpenFds(), fds_before) << "a withheld fd stayed open";
}

// The audit log on stderr (no --audit-log), and stderr a pipe whose reader
// is gone: nothing can ever be written to it again, nor can it be reopened
// (SIGHUP reopens only a file). The broker withholds the grant, then stops
// as on SIGTERM (its socket removed) and exits with status 1, for its
// supervisor to restart it: it never serves on with every grant withheld.
TEST(AuditFailureTest, ABrokerWhoseStderrLogLostItsReaderStops) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd reader(pipe_fds[0]), writer(pipe_fds[1]);
  BrokerOptions options;
  options.audit_on_stderr = true;
  options.stderr_fd = writer.get();
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::StartWith(kPolicy, options));
  writer.reset();
  reader.reset();  // the log collector is gone
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  EXPECT_THAT(client.Acquire("scratch"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("could not write this grant's audit line")));
  ASSERT_OK_AND_ASSIGN(int status, broker->AwaitExit());
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);
  struct stat st;
  EXPECT_NE(stat(broker->socket_path().c_str(), &st), 0) << "the socket was left behind";
}

// The audit file may grow to a limit (RLIMIT_FSIZE: writes past it fail
// with EFBIG). Every grant delivered is on record; the first one that
// cannot be recorded is withheld; once there is room again, grants resume.
TEST(AuditFailureTest, DeliveredGrantsAreOnRecordAndGrantsResume) {
  BrokerOptions options;
  options.file_size_limit = 8192;
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::StartWith(kPolicy, options));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  int delivered = 0;
  absl::Status refused;
  for (int i = 0; i < 1000 && refused.ok(); ++i) {
    absl::StatusOr<Capability> grant = client.Acquire("scratch");
    if (grant.ok()) {
      ++delivered;
    } else {
      refused = grant.status();
    }
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr("could not write this grant's audit line")));
  EXPECT_GT(delivered, 0);
  EXPECT_EQ(GrantLines(broker->AuditLog()), delivered);

  // Room again (logrotate's copytruncate does this).
  ASSERT_EQ(truncate(broker->audit_path().c_str(), 0), 0);
  ASSERT_OK(client.Acquire("scratch"));
  EXPECT_EQ(GrantLines(broker->AuditLog()), 1);
  ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace capbroker

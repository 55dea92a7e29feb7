// End to end: a real capbrokerd, the SDK client, and the policy deciding.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/large_policy.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::BrokerProcess;

constexpr char kPolicy[] = R"(
( capabilities = [
    ( name = "motd",    file = ( path = "$DIR/motd", access = read ) ),
    ( name = "log",     file = ( path = "$DIR/log", access = readWrite, create = true ) ),
    ( name = "spool",   directory = ( path = "$DIR/spool", access = readWrite ) ),
    ( name = "scratch", memory = ( size = 65536 ) ),
    ( name = "board",   memory = ( size = 4096, shared = true ) ),
    ( name = "secret",  file = ( path = "$DIR/secret", access = read ) ) ],
  principals = [
    ( name = "tester", match = ( uid = $UID ),
      grants = [ "motd", "log", "spool", "scratch", "board" ] ) ] )
)";

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(broker_, BrokerProcess::Start(kPolicy));
    WriteFile("motd", "hello from the broker\n");
    WriteFile("secret", "no\n");
    ASSERT_EQ(mkdir((broker_->dir() + "/spool").c_str(), 0700), 0);
    WriteFile("spool/job", "job data");
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(broker_->socket_path()));
  }
  void WriteFile(const std::string& name, const std::string& content) {
    std::string path = broker_->dir() + "/" + name;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, content.data(), content.size()), (ssize_t)content.size());
    close(fd);
  }
  std::string ReadFd(int fd) {
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : "";
  }

  std::unique_ptr<BrokerProcess> broker_;
  std::optional<Client> client_;
};

TEST_F(BrokerTest, HelloReportsIdentityAndPrincipals) {
  EXPECT_EQ(client_->peer().uid, getuid());
  EXPECT_EQ(client_->peer().pid, getpid());
  EXPECT_THAT(client_->peer().principals, ElementsAre("tester"));
  EXPECT_THAT(client_->peer().exe, HasSubstr("broker_test"));
}

TEST_F(BrokerTest, GrantsAFileWithItsAccess) {
  ASSERT_OK_AND_ASSIGN(Capability motd, client_->Acquire("motd"));
  EXPECT_EQ(motd.access, schema::Access::READ);
  EXPECT_EQ(motd.kind, schema::Kind::FILE);
  EXPECT_TRUE(testing::IsCloseOnExec(motd.fd.get()));
  EXPECT_EQ(ReadFd(motd.fd.get()), "hello from the broker\n");
  EXPECT_EQ(write(motd.fd.get(), "x", 1), -1);
  EXPECT_THAT(broker_->AuditLog(), HasSubstr(R"("event":"grant")"));
}

TEST_F(BrokerTest, AttenuatesButNeverWidens) {
  ASSERT_OK_AND_ASSIGN(Capability log, client_->Acquire("log", schema::Access::APPEND));
  EXPECT_EQ(fcntl(log.fd.get(), F_GETFL) & (O_ACCMODE | O_APPEND), O_WRONLY | O_APPEND);
  EXPECT_THAT(client_->Acquire("motd", schema::Access::READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("readWrite")));
}

TEST_F(BrokerTest, DeniesWhatThePolicyDoesNotGrant) {
  EXPECT_THAT(client_->Acquire("secret"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("secret")));
  EXPECT_THAT(client_->Acquire("nothing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nothing")));
  std::string audit = broker_->AuditLog();
  EXPECT_THAT(audit, HasSubstr(R"("event":"deny")"));
  EXPECT_THAT(audit, HasSubstr(R"("capability":"secret")"));
  // The connection keeps working after denials.
  EXPECT_OK(client_->Acquire("motd"));
}

TEST_F(BrokerTest, OpensBeneathADirectoryWithoutEscapes) {
  ASSERT_OK_AND_ASSIGN(Capability job, client_->OpenBeneath("spool", "job"));
  EXPECT_EQ(ReadFd(job.fd.get()), "job data");
  BeneathOptions create;
  create.access = schema::Access::WRITE;
  create.create = true;
  ASSERT_OK_AND_ASSIGN(Capability out, client_->OpenBeneath("spool", "new", create));
  EXPECT_EQ(write(out.fd.get(), "x", 1), 1);
  EXPECT_THAT(client_->OpenBeneath("spool", "../secret"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("leaves its directory")));
  EXPECT_THAT(client_->OpenBeneath("motd", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a directory")));
  ASSERT_OK_AND_ASSIGN(Capability dir, client_->Acquire("spool"));
  EXPECT_EQ(dir.kind, schema::Kind::DIRECTORY);
}

TEST_F(BrokerTest, MemoryIsSealedAndSharedWhenDeclaredSo) {
  ASSERT_OK_AND_ASSIGN(Capability scratch, client_->Acquire("scratch"));
  EXPECT_EQ(scratch.size, 65536u);
  EXPECT_NE(ftruncate(scratch.fd.get(), 1), 0);
  ASSERT_OK_AND_ASSIGN(Capability a, client_->Acquire("board"));
  ASSERT_OK_AND_ASSIGN(Capability b, client_->Acquire("board", schema::Access::READ));
  ASSERT_EQ(pwrite(a.fd.get(), "shared", 6, 0), 6);
  EXPECT_EQ(ReadFd(b.fd.get()).substr(0, 6), "shared");
  EXPECT_EQ(mmap(nullptr, 4096, PROT_WRITE, MAP_SHARED, b.fd.get(), 0), MAP_FAILED);
  // A private memory capability is a new memfd for every grant.
  ASSERT_OK_AND_ASSIGN(Capability other, client_->Acquire("scratch"));
  ASSERT_EQ(pwrite(scratch.fd.get(), "mine", 4, 0), 4);
  EXPECT_NE(ReadFd(other.fd.get()).substr(0, 4), "mine");
}

TEST_F(BrokerTest, ListsAndReportsStatus) {
  ASSERT_OK_AND_ASSIGN(auto list, client_->List());
  std::vector<std::string> names;
  for (const auto& c : list) names.push_back(c.name);
  // In name order, not the policy's.
  EXPECT_THAT(names, ElementsAre("board", "log", "motd", "scratch", "spool"));
  EXPECT_OK(client_->Acquire("motd"));
  EXPECT_FALSE(client_->Acquire("secret").ok());
  ASSERT_OK_AND_ASSIGN(BrokerStatus status, client_->Status());
  EXPECT_EQ(status.connections, 1u);
  EXPECT_EQ(status.grants, 1u);
  EXPECT_EQ(status.denials, 1u);
  ASSERT_EQ(status.denials_by_reason.size(), 1u);
  EXPECT_EQ(status.denials_by_reason[0].first, "permissionDenied");
}

// 1000 capabilities, whose list takes 72 KB, more than a datagram holds:
// List comes in pages.
TEST(BrokerListTest, ListsEveryCapabilityOfAPolicyLargerThanOneReply) {
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::Start(testing::ManyCapabilitiesPolicy(1000)));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  ASSERT_OK_AND_ASSIGN(std::vector<CapabilityInfo> list, client.List());
  ASSERT_EQ(list.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(list[i].name, absl::StrFormat("cap%04d", i));
    EXPECT_EQ(list[i].path, "/tmp/x/motd.txt");
  }
  EXPECT_OK(client.Status());  // the connection is still in step
}

TEST_F(BrokerTest, StopsOnSigtermAndRemovesItsSocket) {
  ASSERT_OK_AND_ASSIGN(int status, broker_->Stop());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(access(broker_->socket_path().c_str(), F_OK), 0);
}

TEST_F(BrokerTest, StopsOnSigintToo) {
  ASSERT_OK_AND_ASSIGN(int status, broker_->Stop(SIGINT));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(access(broker_->socket_path().c_str(), F_OK), 0);
}

TEST_F(BrokerTest, GrantedFdsDoNotStayOpenInTheBroker) {
  int before = broker_->OpenFds();
  for (int i = 0; i < 20; ++i) ASSERT_OK(client_->Acquire("motd"));
  ASSERT_OK(client_->Status());  // a round trip: the grants are finished
  EXPECT_EQ(broker_->OpenFds(), before);
}

// A client asking again and again for what it may not have cannot fill the
// disk: its uid gets a budget of denial lines (20 at once, then 1 a second),
// the rest are counted, and a line says how many. Every denial is still
// answered and counted in status.
TEST_F(BrokerTest, DenialLinesAreThrottledPerUid) {
  constexpr int kDenials = 200;
  absl::Time start = absl::Now();
  for (int i = 0; i < kDenials; ++i) {
    ASSERT_THAT(client_->Acquire("secret"), StatusIs(absl::StatusCode::kPermissionDenied));
  }
  ASSERT_OK_AND_ASSIGN(BrokerStatus status, client_->Status());
  EXPECT_EQ(status.denials, static_cast<uint64_t>(kDenials));
  int64_t seconds = absl::ToInt64Seconds(absl::Now() - start) + 1;
  ASSERT_OK_AND_ASSIGN(int exit_status, broker_->Stop());  // writes the last count
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0);

  int deny_lines = 0;
  uint64_t suppressed = 0;
  for (absl::string_view line : absl::StrSplit(broker_->AuditLog(), '\n')) {
    if (absl::StrContains(line, R"("event":"deny")")) ++deny_lines;
    size_t at = line.find(R"("event":"denialsSuppressed")");
    if (at == absl::string_view::npos) continue;
    size_t count_at = line.find(R"("count":)");
    ASSERT_NE(count_at, absl::string_view::npos) << line;
    uint64_t n = 0;
    absl::string_view digits = line.substr(count_at + 8);
    digits = digits.substr(0, digits.find(','));
    ASSERT_TRUE(absl::SimpleAtoi(digits, &n)) << line;
    suppressed += n;
  }
  EXPECT_GE(deny_lines, 20);
  EXPECT_LE(deny_lines, 20 + seconds) << "denials were not throttled";
  EXPECT_EQ(deny_lines + suppressed, static_cast<uint64_t>(kDenials))
      << "every denial is either written or counted";
}

}  // namespace
}  // namespace capbroker

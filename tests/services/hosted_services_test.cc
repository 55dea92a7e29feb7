// The three shipped services, hosted by a real capbrokerd in their
// sandboxes and used through their client libraries: scanner verdicts,
// kvstore persistence across a crash of the service and a restart of the
// broker, and a journal that can only append.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "sdk/service/call_service.h"
#include "sdk/wire/channel.h"
#include "services/journal/client.h"
#include "services/journal/journal.capnp.h"
#include "services/kvstore/client.h"
#include "services/kvstore/kvstore.capnp.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner_client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/process_watch.h"
#include "tests/fixtures/service_binary.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(( capabilities = [
    ( name = "signatures", file = ( path = "$PUB/signatures.txt", access = read ) ),
    ( name = "kv-data", directory = ( path = "$PUB/kv", access = readWrite ) ),
    ( name = "journal-log", file = ( path = "$PUB/journal.log", access = append,
                                     create = true ) ) ],
  principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [
    ( name = "scanner", command = [ "$SCANNER" ], grants = [ "signatures" ],
      connect = [ "me" ], acceptsFds = true ),
    ( name = "scanner-without-fds", command = [ "$SCANNER" ], grants = [ "signatures" ],
      connect = [ "me" ] ),
    ( name = "kvstore", command = [ "$KVSTORE", "--grant=kv-data" ],
      grants = [ "kv-data" ], connect = [ "me" ], restartDelayMs = 10$KVSTORE_SANDBOX ),
    ( name = "journal", command = [ "$JOURNAL", "--grant=journal-log",
                                    "--max-log-bytes=$JOURNAL_MAX" ],
      grants = [ "journal-log" ], connect = [ "me" ]$JOURNAL_SANDBOX ) ] ))";

class HostedServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const testing::ServiceBinary* b : {&scanner_, &kvstore_, &journal_}) {
      ASSERT_FALSE(b->path().empty());
    }
    // The services' files live beside the scanner's copy.
    pub_ = scanner_.dir();
    std::ofstream(pub_ + "/signatures.txt") << scanner::testing::EicarSignatureLine() << "\n";
    ASSERT_EQ(mkdir((pub_ + "/kv").c_str(), 0700), 0);
    ASSERT_EQ(chown((pub_ + "/kv").c_str(), 65534, 65534), 0);
    StartBroker();
  }

  void StartBroker(testing::BrokerOptions options = {}) {
    client_.reset();
    broker_.reset();
    absl::StatusOr<std::unique_ptr<testing::BrokerProcess>> broker =
        testing::BrokerProcess::StartWith(
            absl::StrReplaceAll(kPolicy, {{"$PUB", pub_},
                                          {"$SCANNER", scanner_.path()},
                                          {"$KVSTORE", kvstore_.path()},
                                          {"$JOURNAL", journal_.path()},
                                          {"$JOURNAL_MAX", journal_max_log_bytes_},
                                          {"$JOURNAL_SANDBOX", journal_sandbox_},
                                          {"$KVSTORE_SANDBOX", kvstore_sandbox_}}),
            std::move(options));
    ASSERT_OK(broker.status());
    broker_ = std::move(*broker);
    absl::StatusOr<Client> client = Client::Connect(broker_->socket_path());
    ASSERT_OK(client.status());
    client_ = std::make_unique<Client>(std::move(*client));
  }

  // A new connection to `service`.
  UniqueFd Connect(absl::string_view service) {
    absl::StatusOr<Capability> connection = client_->ConnectService(service);
    EXPECT_OK(connection.status());
    return connection.ok() ? std::move(connection->fd) : UniqueFd();
  }

  testing::ServiceBinary scanner_{"services/scanner/scanner"};
  testing::ServiceBinary kvstore_{"services/kvstore/kvstore"};
  testing::ServiceBinary journal_{"services/journal/journal"};
  std::string pub_;
  std::string journal_max_log_bytes_ = "1073741824";
  std::string journal_sandbox_;  // ", sandbox = (...)" for the journal
  std::string kvstore_sandbox_;  // and for the kvstore
  std::unique_ptr<testing::BrokerProcess> broker_;
  std::unique_ptr<Client> client_;
};

TEST_F(HostedServicesTest, ScannerGivesVerdictsOnFilesItIsHanded) {
  testing::TempDir files;
  std::ofstream(files.Join("clean.txt")) << "nothing to see here\n";
  std::ofstream(files.Join("eicar.com")) << "prefix " << scanner::testing::Eicar() << " suffix";
  scanner::ScannerClient scanner(Connect("scanner"));
  UniqueFd clean(open(files.Join("clean.txt").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd infected(open(files.Join("eicar.com").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_OK_AND_ASSIGN(scanner::Verdict clean_verdict, scanner.Scan(clean.get()));
  EXPECT_FALSE(clean_verdict.signature.has_value());
  ASSERT_OK_AND_ASSIGN(scanner::Verdict verdict, scanner.Scan(infected.get()));
  EXPECT_EQ(verdict.signature, "Eicar-Test-Signature");
  // A directory is refused with a reason, and the scanner keeps serving.
  UniqueFd dir(open(files.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_THAT(scanner.Scan(dir.get()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("regular file")));
  ASSERT_OK_AND_ASSIGN(scanner::Verdict again, scanner.Scan(infected.get()));
  EXPECT_TRUE(again.signature.has_value());
}

// The scanner takes the file to scan as an fd, which its policy must allow
// (acceptsFds = true, as "scanner" above). Without it, the broker made the
// service's end of each connection refuse fds: the scan fails at the
// client's sendmsg, saying why, and the scanner never sees the file.
TEST_F(HostedServicesTest, AServiceWhosePolicyDoesNotSayAcceptsFdsGetsNone) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "no SO_PASSRIGHTS (Linux 6.16)";
  testing::TempDir files;
  std::ofstream(files.Join("clean.txt")) << "nothing to see here\n";
  UniqueFd clean(open(files.Join("clean.txt").c_str(), O_RDONLY | O_CLOEXEC));
  scanner::ScannerClient without(Connect("scanner-without-fds"));
  EXPECT_THAT(without.Scan(clean.get()).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("refuses fds")));
  EXPECT_OK(without.Info().status());  // requests without fds are served
  scanner::ScannerClient with(Connect("scanner"));
  EXPECT_OK(with.Scan(clean.get()).status());
}

TEST_F(HostedServicesTest, KvstoreKeepsWhatItAcknowledgedAcrossCrashAndBrokerRestart) {
  {
    kvstore::KvstoreClient kv(Connect("kvstore"));
    ASSERT_OK(kv.Put("greeting", "hello"));
    ASSERT_OK(kv.Put("other", "value"));
    ASSERT_OK(kv.Delete("other"));
  }
  // Kill the service: the broker restarts it, and the next connect waits.
  absl::StatusOr<std::vector<ServiceInfo>> services = client_->Services();
  ASSERT_OK(services.status());
  pid_t pid = 0;
  for (const ServiceInfo& s : *services) {
    if (s.name == "kvstore") pid = s.pid;
  }
  ASSERT_GT(pid, 0);
  testing::ProcessWatch kvstore_process(pid);
  ASSERT_TRUE(kvstore_process.valid());
  ASSERT_TRUE(kvstore_process.Signal(SIGKILL));
  ASSERT_TRUE(kvstore_process.WaitExited());
  {
    kvstore::KvstoreClient kv(Connect("kvstore"));
    ASSERT_OK_AND_ASSIGN(std::string value, kv.Get("greeting"));
    EXPECT_EQ(value, "hello");
    EXPECT_THAT(kv.Get("other").status(), StatusIs(absl::StatusCode::kNotFound));
  }
  StartBroker();
  kvstore::KvstoreClient kv(Connect("kvstore"));
  ASSERT_OK_AND_ASSIGN(std::string value, kv.Get("greeting"));
  EXPECT_EQ(value, "hello");
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> keys, kv.List());
  EXPECT_THAT(keys, ::testing::ElementsAre("greeting"));
}

TEST_F(HostedServicesTest, JournalAppendsRecordsWithTheBrokersIdentity) {
  std::ofstream(pub_ + "/journal.log") << "earlier line\n";
  // An append grant holds only for an append-only file (see the next test).
  ASSERT_TRUE(testing::SetAppendOnly(pub_ + "/journal.log", true));
  journal::JournalClient journal(Connect("journal"));
  ASSERT_OK_AND_ASSIGN(journal::RecordId first, journal.Append("first"));
  ASSERT_OK_AND_ASSIGN(journal::RecordId second, journal.Append("second"));
  EXPECT_EQ(second.seq, first.seq + 1);
  std::string log = testing::ReadWholeFile(pub_ + "/journal.log");
  // What was there stays; records follow, naming the principal the broker
  // established.
  EXPECT_EQ(log.rfind("earlier line\n", 0), 0u) << log;
  EXPECT_THAT(log, HasSubstr(absl::StrCat("\"principal\":\"me\",\"uid\":", getuid())));
  EXPECT_LT(log.find("\"text\":\"first\""), log.find("\"text\":\"second\""));
}

// The journal's log is an append grant. A log that is not append-only would
// let a compromised journal truncate it (an O_APPEND fd binds nobody), so
// the journal does not start, and its clients learn why.
TEST_F(HostedServicesTest, JournalDoesNotStartOnALogThatIsNotAppendOnly) {
  std::ofstream(pub_ + "/journal.log") << "earlier line\n";
  EXPECT_THAT(client_->ConnectService("journal").status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("chattr +a " + pub_ + "/journal.log")));
  EXPECT_EQ(testing::ReadWholeFile(pub_ + "/journal.log"), "earlier line\n");
}

// The request with the fd attached, as no client library sends it.
template <typename Reply>
absl::Status CallWithFd(UniqueFd connection, capnp::MessageBuilder& request, int fd) {
  wire::Channel channel(std::move(connection), wire::FdPolicy::kRefuse);
  return CallService<Reply>(channel, request, {fd},
                            [](typename Reply::Reader) { return absl::OkStatus(); });
}

// The kvstore and the journal take no fds (their policies leave acceptsFds
// unset): the broker made their ends of client connections refuse them, so
// a client's sendmsg with an fd fails (EPERM) and nothing reaches the
// service, which never holds a client's file: dropping one can block (a
// FUSE file's flush, a socket lingering on close). The services serve on.
TEST_F(HostedServicesTest, KvstoreAndJournalRefuseFds) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "no SO_PASSRIGHTS (Linux 6.16)";
  std::ofstream(pub_ + "/journal.log") << "";
  ASSERT_TRUE(testing::SetAppendOnly(pub_ + "/journal.log", true));
  UniqueFd any(open("/dev/null", O_RDONLY | O_CLOEXEC));
  {
    capnp::MallocMessageBuilder request;
    request.initRoot<kvstore::schema::Request>().setGet(capnp::Data::Reader(
        reinterpret_cast<const capnp::byte*>("k"), 1));
    EXPECT_THAT(CallWithFd<kvstore::schema::Reply>(Connect("kvstore"), request, any.get()),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("refuses fds")));
  }
  {
    capnp::MallocMessageBuilder request;
    request.initRoot<journal::schema::Request>().setAppend("x");
    EXPECT_THAT(CallWithFd<journal::schema::Reply>(Connect("journal"), request, any.get()),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("refuses fds")));
  }
  kvstore::KvstoreClient kv(Connect("kvstore"));
  EXPECT_OK(kv.Put("k", "v"));
  EXPECT_EQ(testing::ReadWholeFile(pub_ + "/journal.log"), "");
}

// --max-log-bytes in the journal's command bounds its log.
TEST_F(HostedServicesTest, JournalRefusesRecordsBeyondItsMaxLogBytes) {
  journal_max_log_bytes_ = "30000";
  StartBroker();
  std::ofstream(pub_ + "/journal.log") << "earlier line\n";
  ASSERT_TRUE(testing::SetAppendOnly(pub_ + "/journal.log", true));
  journal::JournalClient journal(Connect("journal"));
  absl::Status refused;
  for (int i = 0; i < 10 && refused.ok(); ++i) {
    refused = journal.Append(std::string(4000, 'x')).status();
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                HasSubstr("its limit of 30000 bytes")));
  EXPECT_LE(testing::ReadWholeFile(pub_ + "/journal.log").size(), 30000u);
}

// A --max-log-bytes below one record of the largest size (0, say) would
// make a journal that says it is ready and refuses records the protocol
// allows, with its log empty: the journal does not start, and says why
// with its usage line.
TEST_F(HostedServicesTest, JournalDoesNotStartWithAMaxLogBytesBelowOneRecord) {
  journal_max_log_bytes_ = "0";
  testing::BrokerOptions options;
  options.capture_stderr = true;
  StartBroker(std::move(options));
  EXPECT_THAT(client_->ConnectService("journal").status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("exited before it was ready")));
  EXPECT_THAT(broker_->Stderr(),
              HasSubstr("[journal] journal: --max-log-bytes wants a decimal number from 25127 "
                        "to 18446744073709551615, not '0'"));
  EXPECT_THAT(broker_->Stderr(), HasSubstr("[journal] usage: journal [--grant=NAME] "
                                           "[--max-log-bytes=BYTES]"));
}

// A log at the file size limit (RLIMIT_FSIZE, which the journal inherits
// from the broker here) fails the journal's writes with EFBIG; with
// SIGXFSZ at its default, the first such write would kill the journal
// instead, for every client. (Not as pid 1 of a pid namespace, which
// signals at their default do not reach: hence privatePids = off.)
TEST_F(HostedServicesTest, JournalSurvivesTheFileSizeLimit) {
  constexpr size_t kLimit = 1 << 20;
  std::ofstream(pub_ + "/journal.log") << std::string(kLimit - 50, '\n');
  ASSERT_TRUE(testing::SetAppendOnly(pub_ + "/journal.log", true));
  testing::BrokerOptions options;
  options.file_size_limit = kLimit;
  journal_sandbox_ = ", sandbox = ( privatePids = off )";
  StartBroker(std::move(options));
  journal::JournalClient journal(Connect("journal"));
  EXPECT_THAT(journal.Append("cut short").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("wrote 50 of")));
  EXPECT_THAT(journal.Append("no room").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("RLIMIT_FSIZE")));
  EXPECT_EQ(testing::ReadWholeFile(pub_ + "/journal.log").size(), kLimit);
}

// A value past the file size limit (RLIMIT_FSIZE, which the kvstore
// inherits from the broker here) fails that put with EFBIG; with SIGXFSZ
// at its default, it would kill the kvstore instead, for every client.
// Every service ignores SIGXFSZ (Service::FromEnvironment). (Not as pid 1
// of a pid namespace, which signals at their default do not reach: hence
// privatePids = off.)
TEST_F(HostedServicesTest, KvstoreSurvivesTheFileSizeLimit) {
  testing::BrokerOptions options;
  options.file_size_limit = 16 * 1024;
  kvstore_sandbox_ = ", sandbox = ( privatePids = off )";
  StartBroker(std::move(options));
  kvstore::KvstoreClient kv(Connect("kvstore"));
  ASSERT_OK(kv.Put("small", "fits"));
  EXPECT_THAT(kv.Put("small", std::string(20 * 1024, 'v')),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("RLIMIT_FSIZE")));
  // The same connection, so the same kvstore process, still serves.
  ASSERT_OK_AND_ASSIGN(std::string value, kv.Get("small"));
  EXPECT_EQ(value, "fits");
}

// A kvstore whose directory its uid cannot write to would start, and then
// fail every put with EACCES. It does not start, and says why, naming the
// directory by its grant (--grant=kv-data).
TEST_F(HostedServicesTest, KvstoreDoesNotStartOnADirectoryItCannotWrite) {
  ASSERT_EQ(chown((pub_ + "/kv").c_str(), 0, 0), 0);
  ASSERT_EQ(chmod((pub_ + "/kv").c_str(), 0755), 0);
  testing::BrokerOptions options;
  options.capture_stderr = true;
  StartBroker(std::move(options));
  EXPECT_THAT(client_->ConnectService("kvstore").status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("exited before it was ready")));
  // The broker logs what the service said before it answers the connect.
  EXPECT_THAT(broker_->Stderr(),
              HasSubstr("[kvstore] kvstore: FAILED_PRECONDITION: kv-data: the granted directory "
                        "(mode 0755) does not let the kvstore, running as uid 65534, create files "
                        "in it"));
}

}  // namespace
}  // namespace capbroker

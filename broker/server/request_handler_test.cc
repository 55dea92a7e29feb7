#include "broker/server/request_handler.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

#include "broker/policy/policy_parser.h"
#include "broker/server/reporting_directory.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/limits.h"
#include "tests/fixtures/json_object.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RequestHandlerTest : public ::testing::Test {
 protected:
  RequestHandlerTest() : audit_(devnull_), handler_(audit_, stats_) {
    session_.identity.uid = 1000;
    session_.hello_done = true;
  }
  ~RequestHandlerTest() override { close(devnull_); }

  void Install(const std::string& text) {
    ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(text, "t.capnp"));
    ASSERT_OK(handler_.SetPolicy(std::move(policy)));
  }

  // Sends the request `fill` fills in; the outcome, and the reply's error
  // text.
  template <typename Fill>
  Outcome Handle(Fill fill, std::string* error) {
    return HandleBy(handler_, fill, error);
  }
  // A policy that grants uid 1000 directory "d", dir_/d, with `access`.
  std::string DirectoryPolicy(absl::string_view access) {
    return absl::StrCat(R"(( capabilities = [ ( name = "d", directory = ( path = ")",
                        dir_.Join("d"), R"(", access = )", access, R"( ) ) ],
                        principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "d" ] ) ] ))");
  }

  // The same, to `handler`.
  template <typename Fill>
  Outcome HandleBy(RequestHandler& handler, Fill fill, std::string* error) {
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    fill(request);
    auto reply = reply_message.initRoot<schema::Reply>();
    Outcome outcome = handler.Handle(session_, request.asReader(), reply);
    *error = reply.isError() ? reply.getError().getMessage().cStr() : "";
    return outcome;
  }

  Outcome Acquire(const std::string& name, schema::Access access, std::string* error) {
    return Handle(
        [&](schema::Request::Builder request) {
          auto acquire = request.initAcquire();
          acquire.setName(name);
          acquire.setAccess(access);
        },
        error);
  }

  // Opens `path` beneath directory capability `name` for reading.
  Outcome OpenBeneath(const std::string& name, const std::string& path, std::string* error) {
    return Handle(
        [&](schema::Request::Builder request) {
          auto open = request.initOpenBeneath();
          open.setDirectory(name);
          open.setPath(path);
          open.setAccess(schema::Access::READ);
        },
        error);
  }

  int devnull_ = open("/dev/null", O_WRONLY | O_CLOEXEC);
  audit::AuditLog audit_;
  Stats stats_;
  RequestHandler handler_;
  Session session_;
  testing::TempDir dir_;
};

TEST_F(RequestHandlerTest, QueuedSharedMemfdOutlivesAReloadThatDropsIt) {
  Install(R"(( capabilities = [ ( name = "board", memory = ( size = 4096, shared = true ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "board" ] ) ] ))");
  std::string error;
  Outcome granted = Acquire("board", schema::Access::READ_WRITE, &error);
  ASSERT_EQ(error, "");
  ASSERT_TRUE(granted.shared_fd);
  // The reply has not been sent yet when the administrator reloads.
  Install(R"(( capabilities = [ ( name = "other", memory = ( size = 8192, shared = true ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "other" ] ) ] ))");
  // The fd the reply will carry is still the board memfd, not a closed or
  // reused number.
  struct stat st;
  ASSERT_EQ(fstat(granted.shared_fd->get(), &st), 0);
  EXPECT_EQ(st.st_size, 4096);
  char link[256] = {};
  std::string self = "/proc/self/fd/" + std::to_string(granted.shared_fd->get());
  ASSERT_GT(readlink(self.c_str(), link, sizeof(link) - 1), 0);
  EXPECT_THAT(std::string(link), HasSubstr("capbroker:board"));
}

TEST_F(RequestHandlerTest, ReloadKeepsUnchangedSharedMemfds) {
  const std::string text =
      R"(( capabilities = [ ( name = "board", memory = ( size = 4096, shared = true ) ) ],
           principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "board" ] ) ] ))";
  Install(text);
  std::string error;
  Outcome before = Acquire("board", schema::Access::READ_WRITE, &error);
  Install(text);
  Outcome after = Acquire("board", schema::Access::READ_WRITE, &error);
  ASSERT_TRUE(before.shared_fd && after.shared_fd);
  EXPECT_EQ(before.shared_fd.get(), after.shared_fd.get());
  EXPECT_EQ(stats_.policy_generation, 2u);
}

TEST_F(RequestHandlerTest, ReadGrantOfATruncatingFileDoesNotTruncate) {
  std::string path = dir_.WriteFile("data", "keep me");
  Install(R"(( capabilities = [ ( name = "data", file = ( path = ")" + path +
          R"(", access = readWrite, truncate = true, create = true ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "data" ] ) ] ))");
  std::string error;
  Outcome read = Acquire("data", schema::Access::READ, &error);
  ASSERT_EQ(error, "");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 7) << "a read grant truncated the file";
  Outcome write = Acquire("data", schema::Access::WRITE, &error);
  ASSERT_EQ(error, "");
  // A write grant does, as the policy says, once its line is written (the
  // loop completes the open then).
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 7) << "emptied before the grant was on record";
  ASSERT_TRUE(write.effects.pending());
  ASSERT_OK(write.effects.Complete(write.fds[0].get()));
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

// The policy's create serves writers too: a read grant of a missing file
// is notFound and makes nothing, where a write grant creates it.
TEST_F(RequestHandlerTest, ReadGrantOfACreatingFileDoesNotCreate) {
  const std::string path = dir_.Join("new");
  Install(R"(( capabilities = [ ( name = "new", file = ( path = ")" + path +
          R"(", access = readWrite, create = true ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "new" ] ) ] ))");
  std::string error;
  Outcome read = Acquire("new", schema::Access::READ, &error);
  EXPECT_TRUE(read.fds.empty());
  EXPECT_THAT(error, HasSubstr(path + ": no such file or directory"));
  EXPECT_EQ(stats_.denials_by_reason["notFound"], 1u);
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << "a read grant created the file";
  Outcome write = Acquire("new", schema::Access::READ_WRITE, &error);
  ASSERT_EQ(error, "");
  EXPECT_EQ(write.fds.size(), 1u);
  EXPECT_EQ(stat(path.c_str(), &st), 0);
}

// The policy's rule for files holds beneath a directory too: truncate only
// with write or readWrite. An append fd that empties the file would let an
// append-only writer destroy what is there.
TEST_F(RequestHandlerTest, OpenBeneathTruncatesOnlyForWriters) {
  std::string path = dir_.WriteFile("log", "records");
  Install(R"(( capabilities = [ ( name = "d", directory = ( path = ")" + dir_.path() +
          R"(", access = readWrite ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "d" ] ) ] ))");
  auto open_beneath = [&](schema::Access access, bool create, bool truncate,
                          std::string* error) {
    return Handle(
        [&](schema::Request::Builder request) {
          auto open = request.initOpenBeneath();
          open.setDirectory("d");
          open.setPath("log");
          open.setAccess(access);
          open.setCreate(create);
          open.setTruncate(truncate);
        },
        error);
  };
  std::string error;
  Outcome append = open_beneath(schema::Access::APPEND, false, true, &error);
  EXPECT_TRUE(append.fds.empty());
  EXPECT_EQ(error, "truncate needs write or readWrite access; access is append (an append "
                   "fd must not destroy contents)");
  Outcome read = open_beneath(schema::Access::READ, false, true, &error);
  EXPECT_TRUE(read.fds.empty());
  EXPECT_EQ(error, "truncate needs write or readWrite access; access is read");
  open_beneath(schema::Access::READ, true, false, &error);
  EXPECT_EQ(error, "create needs write, readWrite or append access; access is read");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 7) << "the file was emptied";
  // Creating under append is fine; truncating under write is too.
  open_beneath(schema::Access::APPEND, true, false, &error);
  EXPECT_THAT(error, Not(HasSubstr("needs")));
  Outcome write = open_beneath(schema::Access::WRITE, false, true, &error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 7) << "emptied before the grant was on record";
  ASSERT_OK(write.effects.Complete(write.fds[0].get()));  // as the loop does
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

// A hosted service has its directory grants as bind mounts in its sandbox.
// A directory fd the broker opened, in the host's mount namespace, would let
// it walk the host's tree with `..`: a service gets none at run time, by
// acquire or by open beneath, while regular files beneath stay open to it.
// A client outside any sandbox still gets directory fds.
TEST_F(RequestHandlerTest, ServicesGetNoDirectoryFdAtRunTime) {
  ASSERT_EQ(mkdir(dir_.Join("sub").c_str(), 0700), 0);
  dir_.WriteFile("file", "x");
  Install(R"(( capabilities = [ ( name = "d", directory = ( path = ")" + dir_.path() +
          R"(", access = read ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "d" ] ) ],
               services = [ ( name = "svc", command = [ "/bin/true" ], grants = [ "d" ] ) ] ))");
  for (bool service : {false, true}) {
    SCOPED_TRACE(service ? "service" : "client");
    session_.identity.service = service ? "svc" : "";
    std::string error;
    Outcome whole = Acquire("d", schema::Access::READ, &error);
    EXPECT_EQ(whole.fds.size(), service ? 0u : 1u);
    EXPECT_EQ(error.find("inside its sandbox") != std::string::npos, service) << error;
    Outcome sub = OpenBeneath("d", "sub", &error);
    EXPECT_EQ(sub.fds.size(), service ? 0u : 1u);
    EXPECT_EQ(error.find("inside its sandbox") != std::string::npos, service) << error;
    Outcome file = OpenBeneath("d", "file", &error);
    EXPECT_EQ(file.fds.size(), 1u);
    EXPECT_EQ(error, "");
  }
}

// A service's list leaves out its directory grants, which it has at start
// and is refused at run time: their entries would only show it host paths.
// A client's list shows them.
TEST_F(RequestHandlerTest, AServicesListLeavesOutItsDirectoryGrants) {
  const std::string file = dir_.WriteFile("file", "x");
  Install(R"(( capabilities = [ ( name = "d", directory = ( path = ")" + dir_.path() +
          R"(", access = read ) ), ( name = "f", file = ( path = ")" + file +
          R"(", access = read ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "d", "f" ] ) ],
               services = [ ( name = "svc", command = [ "/bin/true" ], grants = [ "d", "f" ] ) ] ))");
  for (bool service : {false, true}) {
    SCOPED_TRACE(service ? "service" : "client");
    session_.identity.service = service ? "svc" : "";
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    request.setList();
    request.initListPage();
    auto reply = reply_message.initRoot<schema::Reply>();
    handler_.Handle(session_, request.asReader(), reply);
    ASSERT_TRUE(reply.isCapabilities());
    std::vector<std::string> listed;
    for (auto entry : reply.getCapabilities().getEntries()) listed.emplace_back(entry.getName().cStr());
    EXPECT_EQ(listed, service ? std::vector<std::string>{"f"}
                              : std::vector<std::string>({"d", "f"}));
  }
}

// The host's hard-link protection, as the handler was given it, decides
// whether open beneath refuses a file with a second link (caps::OpenBeneath).
TEST_F(RequestHandlerTest, OpenBeneathRefusesLinkedFilesOnlyOnAnUnprotectedHost) {
  ASSERT_EQ(mkdir(dir_.Join("d").c_str(), 0700), 0);
  std::string file = dir_.WriteFile("d/file", "x");
  ASSERT_EQ(link(file.c_str(), dir_.Join("d/link").c_str()), 0);
  const std::string policy = R"(( capabilities = [ ( name = "d", directory = ( path = ")" +
                             dir_.Join("d") + R"(", access = read ) ) ],
      principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "d" ] ) ] ))";
  for (caps::HardLinks hard_links : {caps::HardLinks::kUnprotected, caps::HardLinks::kProtected}) {
    bool refused = hard_links == caps::HardLinks::kUnprotected;
    RequestHandler handler(audit_, stats_, geteuid(), hard_links);
    ASSERT_OK_AND_ASSIGN(Policy parsed, ParsePolicy(policy, "t.capnp"));
    ASSERT_OK(handler.SetPolicy(std::move(parsed)));
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    auto open = request.initOpenBeneath();
    open.setDirectory("d");
    open.setPath("link");
    open.setAccess(schema::Access::READ);
    auto reply = reply_message.initRoot<schema::Reply>();
    Outcome outcome = handler.Handle(session_, request.asReader(), reply);
    EXPECT_EQ(outcome.fds.size(), refused ? 0u : 1u) << "refused: " << refused;
    ASSERT_EQ(reply.isError(), refused);
    if (refused) {
      EXPECT_EQ(reply.getError().getCode(), schema::ErrorCode::FAILED_PRECONDITION);
      EXPECT_THAT(reply.getError().getMessage().cStr(),
                  HasSubstr("capability 'd': open beneath: link: has 2 hard links"));
    }
  }
}

// A file capability is a name as much as a file beneath a directory is:
// where fs.protected_hardlinks is 0, whoever may write in its directory
// (alice in her home, anyone in /tmp) can replace it with a link to
// another's file (`rm inbox; ln /etc/shadow inbox`). The same refusal holds
// for it, for acquire and for a service's start alike.
TEST_F(RequestHandlerTest, FileCapabilityRefusesLinkedFilesOnlyOnAnUnprotectedHost) {
  std::string secret = dir_.WriteFile("secret", "root's");
  ASSERT_EQ(link(secret.c_str(), dir_.Join("inbox").c_str()), 0);
  const std::string policy = R"(( capabilities = [ ( name = "inbox", file = ( path = ")" +
                             dir_.Join("inbox") + R"(", access = readWrite ) ) ],
      principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "inbox" ] ) ],
      services = [ ( name = "svc", command = [ "/bin/true" ], grants = [ "inbox" ] ) ] ))";
  for (caps::HardLinks hard_links : {caps::HardLinks::kUnprotected, caps::HardLinks::kProtected}) {
    bool refused = hard_links == caps::HardLinks::kUnprotected;
    SCOPED_TRACE(refused ? "unprotected" : "protected");
    RequestHandler handler(audit_, stats_, geteuid(), hard_links);
    ASSERT_OK_AND_ASSIGN(Policy parsed, ParsePolicy(policy, "t.capnp"));
    ASSERT_OK(handler.SetPolicy(std::move(parsed)));
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    auto acquire = request.initAcquire();
    acquire.setName("inbox");
    acquire.setAccess(schema::Access::READ_WRITE);
    auto reply = reply_message.initRoot<schema::Reply>();
    Outcome outcome = handler.Handle(session_, request.asReader(), reply);
    EXPECT_EQ(outcome.fds.size(), refused ? 0u : 1u);
    ASSERT_EQ(reply.isError(), refused);
    if (refused) {
      EXPECT_EQ(reply.getError().getCode(), schema::ErrorCode::FAILED_PRECONDITION);
      EXPECT_THAT(reply.getError().getMessage().cStr(),
                  HasSubstr("capability 'inbox': open " + dir_.Join("inbox") +
                            ": has 2 hard links, and fs.protected_hardlinks is 0"));
    }
    Identity service;
    service.service = "svc";
    auto started = handler.GrantAtStart(service, {0}, {});
    if (refused) {
      EXPECT_THAT(started, StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("has 2 hard links")));
    } else {
      EXPECT_OK(started.status());
    }
  }
}

// What `handler` answers a session of `uid` (a hosted service's when
// `service` is not empty), past the handshake, to the request `ask` fills
// in (setStatus, ...). The reply is built in `reply_message`.
schema::Reply::Builder Ask(RequestHandler& handler, uid_t uid,
                           const std::function<void(schema::Request::Builder)>& ask,
                           capnp::MallocMessageBuilder& reply_message,
                           const std::string& service = "") {
  Session session;
  session.identity.uid = uid;
  session.identity.service = service;
  session.hello_done = true;
  capnp::MallocMessageBuilder request_message;
  auto request = request_message.initRoot<schema::Request>();
  request.setId(1);
  ask(request);
  auto reply = reply_message.initRoot<schema::Reply>();
  handler.Handle(session, request.asReader(), reply);
  return reply;
}

// The uptime is counted on the monotonic clock from stats.started: two
// hours ago there reads as 7200 seconds (and a moment more), whatever the
// wall clock says.
TEST_F(RequestHandlerTest, StatusCountsTheUptimeOnTheMonotonicClock) {
  stats_.started = MonotonicNow() - absl::Hours(2);
  capnp::MallocMessageBuilder reply_message;
  auto reply = Ask(
      handler_, 1000, [](schema::Request::Builder request) { request.setStatus(); },
      reply_message);
  ASSERT_TRUE(reply.isStatus());
  EXPECT_GE(reply.getStatus().getUptimeSeconds(), 7200u);
  EXPECT_LT(reply.getStatus().getUptimeSeconds(), 7200u + 600u);
}

// So is the time since the last reload, from stats.last_reload: none yet
// reads as -1; one two hours ago there as 7200 seconds (and a moment
// more), whatever the wall clock says.
TEST_F(RequestHandlerTest, StatusCountsTheLastReloadOnTheMonotonicClock) {
  auto seconds_ago = [&] {
    capnp::MallocMessageBuilder reply_message;
    auto reply = Ask(
        handler_, 1000, [](schema::Request::Builder request) { request.setStatus(); },
        reply_message);
    EXPECT_TRUE(reply.isStatus());
    return reply.isStatus() ? reply.getStatus().getLastReloadSecondsAgo() : -2;
  };
  EXPECT_EQ(seconds_ago(), -1);
  stats_.last_reload = MonotonicNow() - absl::Hours(2);
  const int64_t ago = seconds_ago();
  EXPECT_GE(ago, 7200);
  EXPECT_LT(ago, 7200 + 600);
}

// The policy's path and the last reload error name the administrator's
// files and quote their lines: only root and the broker's uid see them.
TEST_F(RequestHandlerTest, StatusShowsPolicyDetailsOnlyToAdministrators) {
  constexpr uid_t kBrokerUid = 4000;
  RequestHandler handler(audit_, stats_, kBrokerUid);
  ASSERT_OK_AND_ASSIGN(Policy policy,
                       ParsePolicy(R"(( capabilities = [ ], principals = [ ] ))",
                                   "/etc/capbroker/policy.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  stats_.policy_reload_failures = 1;
  stats_.last_reload_error = "/etc/capbroker/policy.capnp:3:7: secret line";
  stats_.audit_reopen_error = "audit log /var/log/capbroker.audit: is a symlink";
  stats_.audit_lines_dropped = 3;
  struct Seen {
    std::string path, error, audit_error;
    uint64_t failures, lines_lost;
  };
  auto status_for = [&](uid_t uid) {
    capnp::MallocMessageBuilder reply_message;
    auto reply = Ask(
        handler, uid, [](schema::Request::Builder request) { request.setStatus(); },
        reply_message);
    EXPECT_TRUE(reply.isStatus());
    auto status = reply.getStatus();
    return Seen{status.getPolicyPath().cStr(), status.getLastReloadError().cStr(),
                status.getAuditLogError().cStr(), status.getPolicyReloadFailures(),
                status.getAuditLinesLost()};
  };
  for (uid_t admin : {kBrokerUid, uid_t{0}}) {
    Seen seen = status_for(admin);
    EXPECT_EQ(seen.path, "/etc/capbroker/policy.capnp") << "uid " << admin;
    EXPECT_EQ(seen.error, stats_.last_reload_error) << "uid " << admin;
    EXPECT_EQ(seen.audit_error, stats_.audit_reopen_error) << "uid " << admin;
  }
  Seen other = status_for(1000);
  EXPECT_EQ(other.path, "");
  EXPECT_EQ(other.error, "");
  EXPECT_EQ(other.audit_error, "");
  EXPECT_EQ(other.failures, 1u);  // the counters are for everyone
  EXPECT_EQ(other.lines_lost, 3u);
}

// An open beneath that creates, or empties, a file does more than open it:
// its audit line says so (create with its mode, truncate), and for a grant
// that asked to create, whether this very open made the file. A plain open
// has none of these fields.
TEST_F(RequestHandlerTest, AuditLineOfAnOpenBeneathRecordsCreateTruncateAndMode) {
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  audit::AuditLog audit(log_fd);
  RequestHandler handler(audit, stats_, geteuid(), caps::HardLinks::kProtected);
  ASSERT_EQ(mkdir(dir_.Join("d").c_str(), 0700), 0);
  dir_.WriteFile("d/keep", "contents");
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(DirectoryPolicy("readWrite"), "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  auto open_beneath = [&](const std::string& path, schema::Access access, bool create,
                          uint32_t mode, bool truncate) {
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    auto open = request.initOpenBeneath();
    open.setDirectory("d");
    open.setPath(path);
    open.setAccess(access);
    open.setCreate(create);
    open.setMode(mode);
    open.setTruncate(truncate);
    auto reply = reply_message.initRoot<schema::Reply>();
    handler.Handle(session_, request.asReader(), reply);
    return reply.isError() ? std::string(reply.getError().getMessage().cStr()) : "";
  };
  EXPECT_EQ(open_beneath("keep", schema::Access::READ, false, 0600, false), "");
  EXPECT_EQ(open_beneath("keep", schema::Access::WRITE, false, 0600, true), "");
  EXPECT_EQ(open_beneath("new", schema::Access::WRITE, true, 0644, false), "");
  EXPECT_EQ(open_beneath("new", schema::Access::READ_WRITE, true, 0640, true), "");
  EXPECT_THAT(open_beneath("keep", schema::Access::APPEND, false, 0600, true),
              HasSubstr("truncate needs write or readWrite access"));
  audit.Flush();
  close(log_fd);
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  for (absl::string_view field : {"\"create\"", "\"mode\"", "\"truncate\"", "\"created\""}) {
    EXPECT_THAT(lines[0], Not(HasSubstr(field))) << lines[0];
  }
  EXPECT_THAT(lines[1], HasSubstr(R"("access":"write","path":"keep","truncate":true},)"
                                  R"("decision":"granted","principal")"));
  EXPECT_THAT(lines[1], Not(HasSubstr("create")));
  EXPECT_THAT(lines[2], HasSubstr(R"("path":"new","create":true,"mode":"0644"},)"
                                  R"("decision":"granted","created":true,"principal")"));
  EXPECT_THAT(lines[3], HasSubstr(R"("path":"new","create":true,"mode":"0640","truncate":true},)"
                                  R"("decision":"granted","created":false,"principal")"));
  EXPECT_THAT(lines[4], HasSubstr(R"("access":"append","path":"keep","truncate":true},)"
                                  R"("decision":"denied","principal")"));
}

// As reported: a file capability's open that creates or empties its file
// does as much as an open beneath that asks to, and its lines say so the
// same way (create with the policy's mode, truncate; created on a grant),
// an acquire's and a service's start grant's alike, and so do the lines
// saying that such a grant was not delivered. Before, acquire and start
// lines had none of these fields.
TEST_F(RequestHandlerTest, AuditLinesOfFileGrantsRecordCreateTruncateAndMode) {
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  audit::AuditLog audit(log_fd);
  RequestHandler handler(audit, stats_, geteuid(), caps::HardLinks::kProtected);
  dir_.WriteFile("keep", "contents");
  dir_.WriteFile("plain", "contents");
  const std::string policy_text = absl::StrCat(
      R"(( capabilities = [
        ( name = "new", file = ( path = ")", dir_.Join("new"), R"(", access = write,
                                 create = true, mode = 0640 ) ),
        ( name = "keep", file = ( path = ")", dir_.Join("keep"), R"(", access = readWrite,
                                  create = true, mode = 0600, truncate = true ) ),
        ( name = "plain", file = ( path = ")", dir_.Join("plain"), R"(", access = read ) ),
        ( name = "made", file = ( path = ")", dir_.Join("made"), R"(", access = write,
                                  create = true, mode = 0644 ) ) ],
      principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "new", "keep", "plain" ] ) ],
      services = [ ( name = "svc", command = [ "/bin/true" ], grants = [ "made" ] ) ] ))");
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(policy_text, "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  auto acquire = [&](const std::string& name, schema::Access access,
                     capnp::MallocMessageBuilder& reply_message) {
    capnp::MallocMessageBuilder request_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    auto acquire = request.initAcquire();
    acquire.setName(name);
    acquire.setAccess(access);
    auto reply = reply_message.initRoot<schema::Reply>();
    Outcome outcome = handler.Handle(session_, request.asReader(), reply);
    EXPECT_FALSE(reply.isError()) << reply.getError().getMessage().cStr();
    return outcome;
  };
  capnp::MallocMessageBuilder new_reply, keep_reply, plain_reply, read_reply;
  Outcome made_new = acquire("new", schema::Access::WRITE, new_reply);         // line 0
  Outcome emptied = acquire("keep", schema::Access::READ_WRITE, keep_reply);   // line 1
  acquire("plain", schema::Access::READ, plain_reply);                         // line 2
  // A read grant neither creates nor empties (Make): nothing to record.
  acquire("keep", schema::Access::READ, read_reply);                           // line 3
  ASSERT_EQ(made_new.fds.size(), 1u);
  ASSERT_EQ(emptied.fds.size(), 1u);
  EXPECT_TRUE(made_new.open.create && made_new.open.created);
  EXPECT_TRUE(emptied.open.truncate);
  handler.GrantNotDelivered(session_, capnp::messageToFlatArray(new_reply), made_new.principal,
                            made_new.open, "the client hung up");               // line 4
  handler.GrantNotDelivered(session_, capnp::messageToFlatArray(keep_reply), emptied.principal,
                            emptied.open, "the client hung up");                // line 5

  Identity service;
  service.uid = 1000;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(RequestHandler::StartGrants start,
                       handler.GrantAtStart(service, {3}, {}));              // line 6
  ASSERT_EQ(start.record.grants.size(), 1u);
  handler.StartNotDelivered(start.record, absl::UnavailableError("execve failed"));  // line 7

  audit.FlushAll();
  close(log_fd);
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 8u) << testing::ReadWholeFile(log_path);
  EXPECT_THAT(lines[0], HasSubstr(R"("capability":"new","access":"write","create":true,)"
                                  R"("mode":"0640"},"decision":"granted","created":true,)"));
  EXPECT_THAT(lines[1], HasSubstr(R"("capability":"keep","access":"readWrite","create":true,)"
                                  R"("mode":"0600","truncate":true},"decision":"granted",)"
                                  R"("created":false,)"));
  for (int i : {2, 3}) {
    for (absl::string_view field : {"\"create\"", "\"mode\"", "\"truncate\"", "\"created\""}) {
      EXPECT_THAT(lines[i], Not(HasSubstr(field))) << lines[i];
    }
  }
  EXPECT_THAT(lines[4], HasSubstr(R"("capability":"new","access":"write","create":true,)"
                                  R"("mode":"0640"},"decision":"denied","principal":"p",)"
                                  R"("reason":"not delivered: the client hung up")"));
  EXPECT_THAT(lines[5], HasSubstr(R"("capability":"keep","access":"readWrite","create":true,)"
                                  R"("mode":"0600","truncate":true},"decision":"denied",)"));
  EXPECT_THAT(lines[6], HasSubstr(R"("kind":"start","capability":"made","access":"write",)"
                                  R"("create":true,"mode":"0644"},"decision":"granted",)"
                                  R"("created":true,)"));
  EXPECT_THAT(lines[7], HasSubstr(R"("kind":"start","capability":"made","access":"write",)"
                                  R"("create":true,"mode":"0644"},"decision":"denied",)"));
  EXPECT_THAT(lines[7], HasSubstr(R"("reason":"not delivered: execve failed")"));
}

// A service's last exit and what it misses can quote capability paths and
// the policy's own path, which `status` shows only to root and the broker's
// uid: `services` shows them to the same, and to others a placeholder where
// there is a text (none where there is none). The rest is for everyone.
TEST_F(RequestHandlerTest, ServicesShowsExitAndMissingTextsOnlyToAdministrators) {
  constexpr uid_t kBrokerUid = 4000;
  RequestHandler handler(audit_, stats_, kBrokerUid);
  ReportingDirectory directory;
  handler.SetServiceDirectory(&directory);
  ServiceReport failed;
  failed.name = "conf";
  failed.state = schema::ServiceState::FAILED;
  failed.protections = "userns mountns";
  failed.missing = "landlock: /x/etc is not supported";
  failed.last_exit = "could not start: directory grant 'conf' is /x/etc, which holds the "
                     "broker's policy file /x/etc/policy.capnp";
  failed.activation = "atStart";
  ServiceReport quiet;
  quiet.name = "quiet";
  // Added back to the policy while its removed instance still runs: that
  // it waits says nothing of paths, and is shown to everyone.
  quiet.waits_for_removed_instance = true;
  directory.reports = {failed, quiet};
  constexpr absl::string_view kWaits =
      "waits for its old instance to exit, then starts";
  struct Seen {
    std::string missing, last_exit, protections, quiet_missing, quiet_last_exit;
  };
  auto services_for = [&](uid_t uid) {
    capnp::MallocMessageBuilder reply_message;
    auto reply = Ask(
        handler, uid,
        [](schema::Request::Builder request) {
          request.setServices();
          request.initServicesPage();
        },
        reply_message);
    EXPECT_TRUE(reply.isServicePage());
    if (!reply.isServicePage()) return Seen{};
    auto entries = reply.getServicePage().getEntries();
    EXPECT_EQ(entries.size(), 2u);
    if (entries.size() != 2) return Seen{};
    return Seen{entries[0].getMissing().cStr(), entries[0].getLastExit().cStr(),
                entries[0].getProtections().cStr(), entries[1].getMissing().cStr(),
                entries[1].getLastExit().cStr()};
  };
  for (uid_t admin : {kBrokerUid, uid_t{0}}) {
    Seen seen = services_for(admin);
    EXPECT_EQ(seen.missing, failed.missing) << "uid " << admin;
    EXPECT_EQ(seen.last_exit, failed.last_exit) << "uid " << admin;
    EXPECT_EQ(seen.quiet_last_exit, kWaits) << "uid " << admin;
  }
  Seen other = services_for(1000);
  EXPECT_EQ(other.last_exit, "(shown to root and the broker's user)");
  EXPECT_EQ(other.missing, "(shown to root and the broker's user)");
  EXPECT_EQ(other.protections, "userns mountns");
  EXPECT_EQ(other.quiet_missing, "");
  EXPECT_EQ(other.quiet_last_exit, kWaits);
}

// A refused reload's error can be long (21 lines, each quoting paths of
// 4,095 bytes, escaped): whole, it made the status reply too large for one
// datagram, and root's `capctl status` failed until a reload succeeded. The
// reply carries at most wire::kMaxStatusTextBytes of it, cut at a character,
// saying so and where the whole text is.
TEST_F(RequestHandlerTest, ALongReloadErrorIsCutToFitTheStatusReply) {
  RequestHandler handler(audit_, stats_);
  ASSERT_OK_AND_ASSIGN(Policy policy,
                       ParsePolicy(R"(( capabilities = [ ], principals = [ ] ))",
                                   "/etc/capbroker/policy.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  // "é" is two bytes: one cut in three would split one.
  stats_.last_reload_error = "p";
  while (stats_.last_reload_error.size() < 100 * 1024) stats_.last_reload_error += "\xc3\xa9x";
  capnp::MallocMessageBuilder reply_message;
  auto reply = Ask(
      handler, 0, [](schema::Request::Builder request) { request.setStatus(); }, reply_message);
  ASSERT_TRUE(reply.isStatus());
  EXPECT_LE(capnp::computeSerializedSizeInWords(reply_message) * sizeof(capnp::word),
            wire::kMaxMessageBytes);
  const std::string shown = reply.getStatus().getLastReloadError().cStr();
  EXPECT_LE(shown.size(), wire::kMaxStatusTextBytes);
  EXPECT_GE(shown.size(), wire::kMaxStatusTextBytes - 200);
  // Checked without gtest's matchers, which would print 100 KiB on failure.
  EXPECT_TRUE(absl::StartsWith(shown, "p\xc3\xa9x"));
  const std::string note = absl::StrCat("... (truncated; ", stats_.last_reload_error.size(),
                                        " bytes; the broker's standard error has it whole)");
  EXPECT_TRUE(absl::EndsWith(shown, note))
      << "ends with: " << shown.substr(shown.size() - std::min<size_t>(shown.size(), 120));
  // Not cut within a character: what precedes the mark is whole UTF-8.
  const std::string kept = shown.substr(0, shown.find("... (truncated;"));
  EXPECT_EQ(stats_.last_reload_error.compare(0, kept.size(), kept), 0);
  EXPECT_NE(static_cast<unsigned char>(stats_.last_reload_error[kept.size()]) & 0xc0, 0x80);
}

// In a per-user broker, hosted services run as the broker's uid. They are
// not its administrators: the sandbox hides the policy from them, and
// status and services must not tell them where it is or what it says.
TEST_F(RequestHandlerTest, AServiceOfTheBrokersUidIsNoAdministrator) {
  constexpr uid_t kBrokerUid = 4000;
  RequestHandler handler(audit_, stats_, kBrokerUid);
  ASSERT_OK_AND_ASSIGN(Policy policy,
                       ParsePolicy(R"(( capabilities = [ ], principals = [ ] ))",
                                   "/home/u/.config/capbroker/policy.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  ReportingDirectory directory;
  handler.SetServiceDirectory(&directory);
  ServiceReport failed;
  failed.name = "conf";
  failed.last_exit = "could not start: /home/u/.config/capbroker holds the policy";
  directory.reports = {failed};
  stats_.last_reload_error = "/home/u/.config/capbroker/policy.capnp:3:7: secret line";
  stats_.audit_reopen_error = "audit log /home/u/audit: is a symlink";
  for (const char* service : {"", "svc"}) {
    SCOPED_TRACE(*service ? "service" : "the broker's user");
    const bool administrator = *service == '\0';
    capnp::MallocMessageBuilder reply_message;
    auto reply = Ask(
        handler, kBrokerUid, [](schema::Request::Builder request) { request.setStatus(); },
        reply_message, service);
    ASSERT_TRUE(reply.isStatus());
    EXPECT_EQ(std::string(reply.getStatus().getPolicyPath().cStr()),
              administrator ? "/home/u/.config/capbroker/policy.capnp" : "");
    EXPECT_EQ(std::string(reply.getStatus().getLastReloadError().cStr()),
              administrator ? stats_.last_reload_error : "");
    EXPECT_EQ(std::string(reply.getStatus().getAuditLogError().cStr()),
              administrator ? stats_.audit_reopen_error : "");
    reply = Ask(
        handler, kBrokerUid, [](schema::Request::Builder request) { request.setServices(); },
        reply_message, service);
    ASSERT_TRUE(reply.isServices());
    ASSERT_EQ(reply.getServices().size(), 1u);
    EXPECT_EQ(std::string(reply.getServices()[0].getLastExit().cStr()),
              administrator ? failed.last_exit : "(shown to root and the broker's user)");
  }
}

// The service host learns from the handler's one rule whether a connect's
// client is an administrator (ConnectRequest::administrator): root and the
// broker's uid, but no hosted service, whatever its uid. A refusal it makes
// with WithAuditReason reaches the client as it says, and the audit line
// with the whole reason.
TEST_F(RequestHandlerTest, TheServiceHostIsToldWhetherAConnectComesFromAnAdministrator) {
  constexpr uid_t kBrokerUid = 4000;
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  audit::AuditLog audit(log_fd);
  RequestHandler handler(audit, stats_, kBrokerUid);
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(R"((
      principals = [ ( name = "all", match = ( anyUser = true ) ) ],
      services = [ ( name = "target", command = [ "/usr/bin/t" ], connect = [ "all", "svc" ] ),
                   ( name = "svc", command = [ "/usr/bin/s" ] ) ] ))",
                                                  "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  class AskedDirectory : public ReportingDirectory {
   public:
    absl::StatusOr<std::optional<UniqueFd>> Connect(const ServiceSpec&,
                                                     const ConnectRequest& request) override {
      administrators.push_back(request.administrator);
      return WithAuditReason(absl::UnavailableError("shown"), "whole: /x/etc/policy.capnp");
    }
    std::vector<bool> administrators;
  } directory;
  handler.SetServiceDirectory(&directory);
  struct Asker {
    uid_t uid;
    const char* service;
  };
  for (Asker asker : {Asker{kBrokerUid, ""}, Asker{0, ""}, Asker{1000, ""},
                      Asker{kBrokerUid, "svc"}, Asker{0, "svc"}}) {
    Session session;
    session.identity.uid = asker.uid;
    session.identity.service = asker.service;
    session.hello_done = true;
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    request.initConnect().setService("target");
    auto reply = reply_message.initRoot<schema::Reply>();
    handler.Handle(session, request.asReader(), reply);
    ASSERT_TRUE(reply.isError());
    EXPECT_EQ(reply.getError().getCode(), schema::ErrorCode::UNAVAILABLE);
    EXPECT_EQ(std::string(reply.getError().getMessage().cStr()), "shown");
  }
  EXPECT_EQ(directory.administrators, (std::vector<bool>{true, true, false, false, false}));
  audit.Flush();
  close(log_fd);
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  for (const std::string& line : lines) {
    EXPECT_THAT(line, HasSubstr(R"("reason":"whole: /x/etc/policy.capnp")"));
  }
}

// Nothing bounds how many principals match one client: here 1000 anyUser
// principals with names of the longest kind (64 bytes). A hello reply
// names the first 8 and counts the rest; so do the denials of an acquire
// and of a connect, whose replies fit in a datagram and whose audit lines
// stay short (under 4 KiB here, for a client with a short exe).
TEST_F(RequestHandlerTest, ManyMatchingPrincipalsAreNamedAFewAtATime) {
  constexpr int kPrincipals = 1000;
  std::string principals;
  for (int i = 0; i < kPrincipals; ++i) {
    absl::StrAppend(&principals, i == 0 ? "" : ", ", "( name = \"", absl::StrFormat("p%063d", i),
                    "\", match = ( anyUser = true ) )");
  }
  const std::string log_path = dir_.Join("audit");
  UniqueFd log_fd(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  ASSERT_TRUE(log_fd.valid());
  audit::AuditLog audit(log_fd.get());
  RequestHandler handler(audit, stats_);
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(absl::StrCat(R"(( capabilities = [ ( name = "m", memory = ( size = 4096 ) ) ],
          principals = [ )", principals, R"(, ( name = "other", match = ( uid = 4242 ) ) ],
          services = [ ( name = "svc", command = [ "/usr/bin/s" ], connect = [ "other" ] ) ] ))"),
                  "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  ReportingDirectory directory;
  handler.SetServiceDirectory(&directory);
  session_.hello_done = false;
  session_.identity.exe = "/usr/bin/client";
  const std::string first = absl::StrFormat("p%063d", 0);
  const std::string eighth = absl::StrFormat("p%063d", 7);
  // Answers `fill` into a reply that must fit in one datagram.
  auto ask = [&](auto fill, capnp::MallocMessageBuilder& reply_message) {
    capnp::MallocMessageBuilder request_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    fill(request);
    auto reply = reply_message.initRoot<schema::Reply>();
    handler.Handle(session_, request.asReader(), reply);
    EXPECT_OK(wire::Flatten(reply_message).status());
    return reply;
  };
  capnp::MallocMessageBuilder hello_message;
  auto hello = ask([](schema::Request::Builder r) {
    r.initHello().setVersion(schema::PROTOCOL_VERSION);
  }, hello_message);
  ASSERT_TRUE(hello.isHello());
  ASSERT_EQ(hello.getHello().getPrincipals().size(), kMaxNamedPrincipals);
  EXPECT_EQ(std::string(hello.getHello().getPrincipals()[0].cStr()), first);
  EXPECT_EQ(std::string(hello.getHello().getPrincipals()[7].cStr()), eighth);
  EXPECT_EQ(hello.getHello().getMorePrincipals(), kPrincipals - kMaxNamedPrincipals);

  capnp::MallocMessageBuilder acquire_message;
  auto acquire = ask([](schema::Request::Builder r) {
    r.initAcquire().setName("m");
  }, acquire_message);
  ASSERT_TRUE(acquire.isError());
  EXPECT_EQ(acquire.getError().getCode(), schema::ErrorCode::PERMISSION_DENIED);
  const std::string denied = acquire.getError().getMessage().cStr();
  EXPECT_THAT(denied, HasSubstr(absl::StrCat("; principals '", first, "', ")));
  EXPECT_THAT(denied, HasSubstr(absl::StrCat("'", eighth, "' and 992 more match but do not "
                                             "grant 'm'")));
  capnp::MallocMessageBuilder connect_message;
  auto connect = ask([](schema::Request::Builder r) {
    r.initConnect().setService("svc");
  }, connect_message);
  ASSERT_TRUE(connect.isError());
  EXPECT_THAT(std::string(connect.getError().getMessage().cStr()),
              HasSubstr(absl::StrCat("'", eighth, "' and 992 more in connect")));

  audit.Flush();
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  for (const std::string& line : lines) {
    EXPECT_LT(line.size(), 4096u) << line.substr(0, 200);
    EXPECT_THAT(line, HasSubstr("and 992 more"));
  }
}

// An audit line's reason is cut at 8 KiB, its mark included, as status
// texts are: here a service host's refusal whose whole reason (for the
// log: WithAuditReason) is 100 KB.
TEST_F(RequestHandlerTest, AnAuditLinesReasonIsCut) {
  const std::string log_path = dir_.Join("audit");
  UniqueFd log_fd(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  ASSERT_TRUE(log_fd.valid());
  audit::AuditLog audit(log_fd.get());
  RequestHandler handler(audit, stats_);
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(R"((
      principals = [ ( name = "all", match = ( anyUser = true ) ) ],
      services = [ ( name = "target", command = [ "/usr/bin/t" ], connect = [ "all" ] ) ] ))",
                                                  "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  class LongReasons : public ReportingDirectory {
   public:
    absl::StatusOr<std::optional<UniqueFd>> Connect(const ServiceSpec&,
                                                     const ConnectRequest&) override {
      return WithAuditReason(absl::UnavailableError("shown"), std::string(100000, 'r'));
    }
  } directory;
  handler.SetServiceDirectory(&directory);
  std::string error;
  HandleBy(handler, [](schema::Request::Builder r) { r.initConnect().setService("target"); },
           &error);
  EXPECT_EQ(error, "shown");
  audit.Flush();
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr(R"x(rrr... (truncated; 100000 bytes)")x"));
  EXPECT_LT(lines[0].size(), 8192u + 1024u);
}

// A client's name or path that fails its length check is refused, and the
// audit line shows no more of it than the limit (and how long it was): a
// request must not make the broker write a line as long as itself.
TEST_F(RequestHandlerTest, AuditLineShowsNoMoreOfAnOverlongFieldThanTheLimit) {
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  audit::AuditLog audit(log_fd);
  RequestHandler handler(audit, stats_);
  ASSERT_OK_AND_ASSIGN(Policy policy,
                       ParsePolicy(R"(( capabilities = [ ], principals = [ ] ))", "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  // 'é' (two bytes) across the name limit: the cut keeps whole characters.
  const std::string long_name = std::string(63, 'n') + "\xc3\xa9" + std::string(59935, 'n');
  const std::string long_path(60000, 'p');
  ASSERT_EQ(long_name.size(), 60000u);
  auto handle = [&](auto fill) {
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    fill(request);
    auto reply = reply_message.initRoot<schema::Reply>();
    handler.Handle(session_, request.asReader(), reply);
    EXPECT_TRUE(reply.isError());
    EXPECT_EQ(reply.getError().getCode(), schema::ErrorCode::INVALID_REQUEST);
  };
  handle([&](schema::Request::Builder r) {
    auto acquire = r.initAcquire();
    acquire.setName(long_name);
    acquire.setAccess(schema::Access::READ);
  });
  handle([&](schema::Request::Builder r) {
    auto open = r.initOpenBeneath();
    open.setDirectory("d");
    open.setPath(long_path);
    open.setAccess(schema::Access::READ);
  });
  handle([&](schema::Request::Builder r) {
    auto open = r.initOpenBeneath();
    open.setDirectory(long_name);  // refused for the name: the path is cut too
    open.setPath(long_path);
    open.setAccess(schema::Access::READ);
  });
  handle([&](schema::Request::Builder r) { r.initConnect().setService(long_name); });
  audit.Flush();
  close(log_fd);
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  const std::string cut_name =
      R"("capability":")" + std::string(63, 'n') + R"x(... (truncated; 60000 bytes)")x";
  const std::string cut_path =
      R"("path":")" + std::string(4095, 'p') + R"x(... (truncated; 60000 bytes)")x";
  for (const std::string& line : lines) {
    EXPECT_LT(line.size(), 4095u + 1024u) << line.substr(0, 200);
  }
  EXPECT_THAT(lines[0], HasSubstr(cut_name));
  EXPECT_THAT(lines[1], HasSubstr(cut_path));
  EXPECT_THAT(lines[1], HasSubstr(R"("capability":"d")"));
  EXPECT_THAT(lines[2], HasSubstr(cut_name));
  EXPECT_THAT(lines[2], HasSubstr(cut_path));
  EXPECT_THAT(lines[3], HasSubstr(cut_name));
}

// Names, paths and executables come from clients, whole audit lines are
// what readers parse: with a newline, a quote, bytes that are not UTF-8
// and U+2028 in the capability name, the path and the executable, each
// line is still exactly one JSON object, and each field decodes to what
// the client sent (bytes that are not UTF-8 as \udcXX).
TEST_F(RequestHandlerTest, AuditLinesOfHostileNamesPathsAndExesAreOneJsonObjectEach) {
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  audit::AuditLog audit(log_fd);
  RequestHandler handler(audit, stats_);
  ASSERT_EQ(mkdir(dir_.Join("d").c_str(), 0700), 0);
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(DirectoryPolicy("read"), "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  const std::string hostile = "a\n\"}\\{\xe9\xe2\x80\xa8\xc2\x9b[0m\r";
  session_.identity.exe = "/usr/bin/" + hostile;
  std::string error;
  HandleBy(
      handler,
      [&](schema::Request::Builder r) {
        auto acquire = r.initAcquire();
        acquire.setName(hostile);
        acquire.setAccess(schema::Access::READ);
      },
      &error);
  HandleBy(
      handler,
      [&](schema::Request::Builder r) {
        auto open = r.initOpenBeneath();
        open.setDirectory("d");
        open.setPath(hostile);
        open.setAccess(schema::Access::READ);
      },
      &error);
  audit.Flush();
  close(log_fd);
  const std::string text = testing::ReadWholeFile(log_path);
  EXPECT_THAT(text, Not(HasSubstr("\xe2\x80\xa8")));
  EXPECT_THAT(text, Not(HasSubstr("\r")));
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << text;
  // A field's value, decoded, or why it is not a JSON string.
  auto decoded = [](const std::string& json) {
    absl::StatusOr<std::string> text = testing::DecodeJsonString(json);
    return text.ok() ? *text : "not a JSON string: " + text.status().ToString();
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i]);
    ASSERT_OK_AND_ASSIGN(auto line, testing::ParseJsonObject(lines[i]));
    ASSERT_OK_AND_ASSIGN(auto peer, testing::ParseJsonObject(line["peer"]));
    EXPECT_EQ(decoded(peer["exe"]), "/usr/bin/" + hostile);
    ASSERT_OK_AND_ASSIGN(auto request, testing::ParseJsonObject(line["request"]));
    if (i == 0) {
      EXPECT_EQ(decoded(request["capability"]), hostile);
    } else {
      EXPECT_EQ(decoded(request["capability"]), "d");
      EXPECT_EQ(decoded(request["path"]), hostile);
    }
  }
}

// As reported: the lines that correct or complete a grant on record went
// through the denial budget of their uid, which a client spends on purpose
// with requests for unknown names; they were then only counted. A grant
// the loop dropped (GrantNotDelivered), a connect that waited and was not
// delivered (ConnectNotDelivered) and a start refused (GrantAtStart, on the
// service's uid) are always written.
TEST_F(RequestHandlerTest, LinesAboutAGrantOnRecordIgnoreTheDenialBudget) {
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  // Two denial lines, never refilled: spent after two requests.
  audit::AuditLog audit(log_fd, {/*burst=*/2, /*per_second=*/0});
  RequestHandler handler(audit, stats_);
  dir_.WriteFile("motd", "hello");
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(R"(( capabilities = [ ( name = "motd", file = ( path = ")" + dir_.Join("motd") +
                      R"(", access = read ) ),
                      ( name = "gone", file = ( path = ")" + dir_.Join("gone") +
                      R"(", access = read ) ) ],
                      principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "motd" ] ) ],
                      services = [ ( name = "svc", command = [ "/bin/true" ], connect = [ "p" ],
                                     grants = [ "gone" ] ) ] ))",
                  "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  auto acquire = [&](const std::string& name, capnp::MallocMessageBuilder& reply_message) {
    capnp::MallocMessageBuilder request_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(1);
    auto acquire = request.initAcquire();
    acquire.setName(name);
    acquire.setAccess(schema::Access::READ);
    auto reply = reply_message.initRoot<schema::Reply>();
    return handler.Handle(session_, request.asReader(), reply);
  };
  for (int i = 0; i < 5; ++i) {
    capnp::MallocMessageBuilder reply_message;
    acquire("unknown", reply_message);
  }
  EXPECT_EQ(audit.denials_suppressed(), 3u);

  capnp::MallocMessageBuilder granted;
  Outcome outcome = acquire("motd", granted);
  ASSERT_EQ(outcome.fds.size(), 1u);
  ASSERT_EQ(outcome.principal, "p");
  kj::Array<capnp::word> reply = capnp::messageToFlatArray(granted);
  handler.GrantNotDelivered(session_, reply, outcome.principal, outcome.open,
                            "the client hung up");

  ConnectRequest connect;
  connect.client = session_.identity;
  connect.principal = "p";
  handler.ConnectNotDelivered(connect, "svc", absl::UnavailableError("the broker stops"));

  Identity service;
  service.uid = 1000;  // the client's uid: its budget is spent too
  service.service = "svc";
  EXPECT_THAT(handler.GrantAtStart(service, {1}, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("capability 'gone'")));
  EXPECT_EQ(audit.denials_suppressed(), 3u);

  audit.FlushAll();
  close(log_fd);
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 7u) << testing::ReadWholeFile(log_path);
  EXPECT_THAT(lines[2], HasSubstr(R"("capability":"motd","access":"read"},"decision":"granted")"));
  EXPECT_THAT(lines[3], HasSubstr(R"("capability":"motd","access":"read"},"decision":"denied",)"
                                  R"("principal":"p","reason":"not delivered: the client hung up")"));
  EXPECT_THAT(lines[4], HasSubstr(R"("kind":"connect","capability":"svc")"));
  EXPECT_THAT(lines[4], HasSubstr(R"("reason":"not delivered: the broker stops")"));
  EXPECT_THAT(lines[5], HasSubstr(R"("kind":"start","capability":"gone")"));
  EXPECT_THAT(lines[5], HasSubstr(R"("decision":"denied")"));
  EXPECT_THAT(lines[6], HasSubstr(R"("event":"denialsSuppressed","peer":{"uid":1000},"count":3)"));
}

// As reported: refusals of requests that name nothing to grant (request
// id 0, a request before hello, another protocol version, hello twice,
// ready from a client that is no service, a page of list or services with
// a startAfter longer than a name) were counted as denials and never
// written. Each is on record as one denial line, a JSON object
// with its request kind and reason, capability and access empty; and
// within the uid's denial budget, so a client cannot flood the log.
TEST_F(RequestHandlerTest, RefusalsThatNameNothingAreOnRecordWithinTheBudget) {
  std::string log_path = dir_.Join("audit");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  constexpr int kBurst = 7;
  audit::AuditLog audit(log_fd, {/*burst=*/kBurst, /*per_second=*/0});
  RequestHandler handler(audit, stats_);
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(R"(( principals = [ ( name = "p", match = ( uid = 1000 ) ) ] ))", "t.capnp"));
  ASSERT_OK(handler.SetPolicy(std::move(policy)));
  Session fresh;  // no hello yet
  fresh.identity.uid = 1000;
  auto send = [&](Session& session, uint64_t id, auto fill) {
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(id);
    fill(request);
    auto reply = reply_message.initRoot<schema::Reply>();
    handler.Handle(session, request.asReader(), reply);
    EXPECT_TRUE(reply.isError());
  };
  auto hello = [](uint32_t version) {
    return [version](schema::Request::Builder r) { r.initHello().setVersion(version); };
  };
  send(fresh, 0, hello(schema::PROTOCOL_VERSION));
  send(fresh, 1, [](schema::Request::Builder r) { r.initAcquire().setName("m"); });
  send(fresh, 2, hello(schema::PROTOCOL_VERSION + 1));
  send(session_, 3, hello(schema::PROTOCOL_VERSION));  // hello_done already
  send(session_, 4, [](schema::Request::Builder r) { r.setReady(); });
  const std::string too_long(wire::kMaxNameBytes + 1, 'a');
  send(session_, 5, [&](schema::Request::Builder r) {
    r.setList();
    r.initListPage().setStartAfter(too_long);
  });
  send(session_, 6, [&](schema::Request::Builder r) {
    r.setServices();
    r.initServicesPage().setStartAfter(too_long);
  });
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"invalid", "request id 0 is reserved; use a nonzero id"},
      {"invalid", "the first request on a connection must be hello"},
      {"hello", absl::StrCat("this broker speaks protocol version ", schema::PROTOCOL_VERSION,
                             "; the client asked for version ", schema::PROTOCOL_VERSION + 1)},
      {"hello", "hello was already done on this connection"},
      {"ready", "only a hosted service can say it is ready"},
      {"list", absl::StrCat("list startAfter is ", too_long.size(), " bytes; a name has at most ",
                            wire::kMaxNameBytes)},
      {"services", absl::StrCat("services startAfter is ", too_long.size(),
                                " bytes; a name has at most ", wire::kMaxNameBytes)},
  };
  ASSERT_EQ(expected.size(), static_cast<size_t>(kBurst));
  // Over the budget: counted, not written.
  send(session_, 7, [](schema::Request::Builder r) { r.setReady(); });
  audit.Flush();
  std::vector<std::string> lines =
      absl::StrSplit(testing::ReadWholeFile(log_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), expected.size()) << testing::ReadWholeFile(log_path);
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto line, testing::FlattenJsonObject(lines[i]));
    EXPECT_EQ(line["event"], "deny") << lines[i];
    EXPECT_EQ(line["decision"], "denied") << lines[i];
    EXPECT_EQ(line["peer.uid"], "1000") << lines[i];
    EXPECT_EQ(line["request.kind"], expected[i].first) << lines[i];
    EXPECT_EQ(line["request.capability"], "") << lines[i];
    EXPECT_EQ(line["request.access"], "") << lines[i];
    EXPECT_EQ(line["reason"], expected[i].second) << lines[i];
  }
  EXPECT_EQ(stats_.denials, expected.size() + 1);
  EXPECT_EQ(audit.denials_suppressed(), 1u);
  close(log_fd);
}

}  // namespace
}  // namespace capbroker::server

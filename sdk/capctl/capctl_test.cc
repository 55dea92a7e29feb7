// capctl against a real capbrokerd: every command, the exit code of each
// failure class, hostile command lines, and exec's fd hand-over.
#include "sdk/capctl/capctl.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "sdk/capctl/fd_output.h"
#include "sdk/capctl/fd_placement.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/large_policy.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/in_child.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using testing::BrokerProcess;

constexpr char kPolicy[] = R"(
( capabilities = [
    ( name = "motd",    file = ( path = "$DIR/motd", access = read ) ),
    ( name = "spool",   directory = ( path = "$DIR/spool", access = readWrite ) ),
    ( name = "scratch", memory = ( size = 65536 ) ),
    ( name = "secret",  file = ( path = "$DIR/secret", access = read ) ) ],
  principals = [
    ( name = "tester", match = ( uid = $UID ),
      grants = [ "motd", "spool", "scratch" ] ) ] )
)";

struct Result {
  int code;
  std::string out;
  std::string err;
};

// The lines of `text`, without the trailing empty one.
std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class CapctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(broker_, BrokerProcess::Start(kPolicy));
    WriteFile("motd", "hello from the broker\n", 0644);
    WriteFile("secret", "no\n", 0644);
    ASSERT_EQ(mkdir(Path("spool").c_str(), 0700), 0);
    WriteFile("spool/job", "job data", 0644);
  }
  std::string Path(const std::string& name) { return broker_->dir() + "/" + name; }
  void WriteFile(const std::string& name, const std::string& content, mode_t mode) {
    int fd = open(Path(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, content.data(), content.size()), (ssize_t)content.size());
    close(fd);
  }
  // Runs capctl with this broker's socket.
  Result Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--socket", broker_->socket_path()});
    return RunRaw(args);
  }
  static Result RunRaw(const std::vector<std::string>& args) {
    std::ostringstream out, err;
    int code = RunCapctl(args, out, err);
    return {code, out.str(), err.str()};
  }
  // A failure: `code`, and exactly one stderr line "capctl: ..." (then the
  // usage text, for usage errors).
  static void ExpectFailure(const Result& r, int code) {
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_THAT(r.err, StartsWith("capctl: "));
    if (code != kExitUsage) {
      EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
    } else {
      // The one line, then the usage (the command's, or all of it).
      EXPECT_THAT(r.err.substr(r.err.find('\n') + 1), StartsWith("usage: capctl")) << r.err;
    }
  }
  // Runs `args` in a forked child whose stdout is captured (exec replaces
  // the process); returns the exit code and the output.
  // `in_child` runs first in the child.
  Result RunInChild(const std::vector<std::string>& args,
                    const std::function<void()>& in_child = [] {}) {
    int pipefd[2];
    EXPECT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
      dup2(pipefd[1], 1);
      dup2(pipefd[1], 2);
      in_child();
      Result r = Run(args);
      std::string all = r.out + r.err;
      (void)!write(1, all.data(), all.size());
      _exit(r.code);
    }
    close(pipefd[1]);
    std::string output;
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) output.append(buf, n);
    close(pipefd[0]);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status));
    child_pid_ = pid;
    return {WEXITSTATUS(status), output, ""};
  }

  // A usage error of exec or connect, found before anything runs: run in a
  // child, since without the check the command would be run, and an exec
  // that succeeded would replace the test's own process (a test binary
  // replaced by /bin/true exits 0, and the test would pass). Returns what
  // it wrote, in `err` (a usage error writes nothing on stdout).
  Result ExpectUsageErrorInChild(const std::vector<std::string>& args) {
    Result r = RunInChild(args);  // stdout and stderr together, in r.out
    r = {r.code, "", r.out};
    ExpectFailure(r, kExitUsage);
    return r;
  }

  // Runs `capctl status` until its output contains `text` (each run is a
  // round trip to the broker, which handles a signal before it answers the
  // next request: an event, not a sleep); the last output.
  std::string StatusUntil(const std::string& text) {
    std::string out;
    for (int i = 0; i < 10000; ++i) {
      Result r = Run({"status"});
      EXPECT_EQ(r.code, kExitOk) << r.err;
      out = r.out;
      if (r.code != kExitOk || absl::StrContains(out, text)) return out;
    }
    ADD_FAILURE() << "status never said '" << text << "': " << out;
    return out;
  }

  std::unique_ptr<BrokerProcess> broker_;
  pid_t child_pid_ = -1;
};

TEST_F(CapctlTest, RequestDescribesTheGrant) {
  Result r = Run({"request", "motd"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("motd: file, read access, fd "));
  EXPECT_EQ(r.err, "");
}

TEST_F(CapctlTest, RequestAttenuates) {
  Result r = Run({"request", "spool", "--access", "read"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("spool: directory, read access"));
  r = Run({"request", "spool", "--access=readWrite"});
  EXPECT_THAT(r.out, StartsWith("spool: directory, readWrite access"));
}

TEST_F(CapctlTest, RequestMemoryShowsItsSize) {
  Result r = Run({"request", "scratch"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("scratch: memory, 65536 bytes, fd "));
}

TEST_F(CapctlTest, DenialExitsThreeWithTheReason) {
  Result r = Run({"request", "secret"});
  ExpectFailure(r, kExitPermissionDenied);
  EXPECT_THAT(r.err, HasSubstr("does not grant 'secret'"));
}

TEST_F(CapctlTest, WideningIsDenied) {
  ExpectFailure(Run({"request", "motd", "--access", "write"}), kExitPermissionDenied);
}

TEST_F(CapctlTest, UnknownCapabilityExitsFour) {
  ExpectFailure(Run({"request", "nosuch"}), kExitNotFound);
}

// The line names the command that ran, as every other failure does. Before,
// it was "capctl: connect: no broker socket at ...", as if the command
// `connect` had run.
TEST_F(CapctlTest, NoBrokerExitsFive) {
  const std::string absent = broker_->dir() + "/absent.sock";
  Result r = RunRaw({"--socket", absent, "list"});
  ExpectFailure(r, kExitUnavailable);
  EXPECT_THAT(r.err, StartsWith(absl::StrCat("capctl: list: no broker socket at ", absent)));
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"request", "motd"}, {"open", "spool", "job"},
        {"exec", "motd", "--", "/bin/true"}, {"status"}, {"services"},
        {"connect", "kvstore", "--", "/bin/true"}}) {
    std::vector<std::string> args = {"--socket", absent};
    args.insert(args.end(), command.begin(), command.end());
    Result other = RunRaw(args);
    ExpectFailure(other, kExitUnavailable);
    EXPECT_THAT(other.err, StartsWith(absl::StrCat("capctl: ", command[0], ": no broker socket")));
  }
}

// A second occurrence of an option is refused, naming it: the last one
// won, so a wrapper adding arguments could change the socket, or the
// access asked for, without a sign.
TEST_F(CapctlTest, AnOptionGivenTwiceIsRefused) {
  Result socket = RunRaw({"--socket", "/nonexistent/x", "--socket", broker_->socket_path(),
                          "list"});
  ExpectFailure(socket, kExitUsage);
  EXPECT_THAT(socket.err, StartsWith("capctl: --socket given twice\n"));
  Result timeout = Run({"--timeout=5", "--timeout", "1", "list"});
  ExpectFailure(timeout, kExitUsage);
  EXPECT_THAT(timeout.err, StartsWith("capctl: --timeout given twice\n"));

  Result access = Run({"request", "motd", "--access", "write", "--access", "read"});
  ExpectFailure(access, kExitUsage);
  EXPECT_THAT(access.err, StartsWith("capctl: request: --access given twice\n"));
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--access=read", "--access=read"}, "--access"},
      {{"--create", "--mode", "0600", "--mode=0644"}, "--mode"},
      {{"--create", "--access", "write", "--create"}, "--create"},
      {{"--access", "write", "--truncate", "--truncate"}, "--truncate"},
  };
  for (const auto& [options, flag] : cases) {
    std::vector<std::string> args = {"open", "spool", "new"};
    args.insert(args.end(), options.begin(), options.end());
    Result r = Run(args);
    ExpectFailure(r, kExitUsage);
    EXPECT_THAT(r.err, StartsWith(absl::StrCat("capctl: open: ", flag, " given twice\n")))
        << absl::StrJoin(args, " ");
  }
  struct stat st;
  EXPECT_NE(stat(Path("spool/new").c_str(), &st), 0) << "a refused command ran";
}

TEST_F(CapctlTest, OpenBeneath) {
  Result r = Run({"open", "spool", "job"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("spool: file, read access, path job, fd "));
}

TEST_F(CapctlTest, OpenBeneathCreatesWithMode) {
  Result r = Run({"open", "spool", "new", "--access", "write", "--create",
                  "--mode", "0640"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  struct stat st;
  ASSERT_EQ(stat(Path("spool/new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

// open reads unless --access says otherwise, and read can neither create
// nor truncate: --create or --truncate without --access is a usage error
// naming what to give, not the broker's refusal of an access nobody typed
// ("create needs write, readWrite or append access; access is read").
TEST_F(CapctlTest, OpenCreateOrTruncateNeedsAccess) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--create", "--mode", "0644"},
       "open --create needs --access write, readWrite or append (without --access, open "
       "reads)"},
      {{"--truncate"}, "open --truncate needs --access write or readWrite (without --access, "
                       "open reads)"},
      {{"--create", "--truncate"},
       "open --create and --truncate need --access write or readWrite (without --access, "
       "open reads)"},
  };
  for (const auto& [options, why] : cases) {
    std::vector<std::string> args = {"open", "spool", "new"};
    args.insert(args.end(), options.begin(), options.end());
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = Run(args);
    ExpectFailure(r, kExitUsage);
    EXPECT_THAT(r.err, StartsWith(absl::StrCat("capctl: ", why, "\n")));
  }
  struct stat st;
  EXPECT_NE(stat(Path("spool/new").c_str(), &st), 0) << "a refused command ran";
  // With --access, as before.
  EXPECT_EQ(Run({"open", "spool", "new", "--create", "--access", "write"}).code, kExitOk);
}

// --mode is the mode of a file open creates: without --create it would be
// dropped while the file is opened anyway.
TEST_F(CapctlTest, OpenModeNeedsCreate) {
  for (const std::vector<std::string>& options :
       {std::vector<std::string>{"--mode", "0600"},
        std::vector<std::string>{"--access", "write", "--mode=0644"},
        std::vector<std::string>{"--access", "write", "--truncate", "--mode", "0600"}}) {
    std::vector<std::string> args = {"open", "spool", "job"};
    args.insert(args.end(), options.begin(), options.end());
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = Run(args);
    ExpectFailure(r, kExitUsage);
    EXPECT_THAT(r.err, StartsWith("capctl: open: --mode needs --create\n"));
  }
}

// No option has a single dash, and no name begins with one: such a word is
// a mistyped option, named, not a name that is refused for another reason
// ("request takes one NAME"). open's PATH is the exception: a file name may
// begin with a dash.
TEST_F(CapctlTest, ASingleDashWordIsAnUnknownOption) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"request", "motd", "-x"}, "request: unknown option -x"},
      {{"request", "-x", "motd"}, "request: unknown option -x"},
      {{"request", "-"}, "request: unknown option -"},
      {{"open", "-x", "spool", "job"}, "open: unknown option -x"},
      {{"open", "spool", "job", "-x"}, "open: unknown option -x"},
      {{"open", "spool", "-new", "-x", "--access", "write", "--create"},
       "open: unknown option -x"},
      {{"exec", "motd", "-x", "--", "/bin/true"}, "exec: unknown option -x"},
      {{"connect", "-x", "--", "/bin/true"}, "connect: unknown option -x"},
      {{"list", "-l"}, "list: unknown option -l"},
      {{"status", "extra", "-h"}, "status: unknown option -h"},
      {{"services", "-a"}, "services: unknown option -a"},
  };
  for (const auto& [args, why] : cases) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = Run(args);
    ExpectFailure(r, kExitUsage);
    EXPECT_THAT(r.err, StartsWith(absl::StrCat("capctl: ", why, "\n")));
  }
  struct stat st;
  EXPECT_NE(stat(Path("spool/-new").c_str(), &st), 0) << "a refused command ran";

  Result dash_path = Run({"open", "spool", "-new", "--access", "write", "--create"});
  EXPECT_EQ(dash_path.code, kExitOk) << dash_path.err;
  EXPECT_EQ(stat(Path("spool/-new").c_str(), &st), 0);
}

TEST_F(CapctlTest, OpenBeneathRefusesEscapes) {
  ExpectFailure(Run({"open", "spool", "../secret"}), kExitPermissionDenied);
  Result absolute = Run({"open", "spool", "/etc/passwd"});
  EXPECT_NE(absolute.code, kExitOk);
  EXPECT_EQ(Lines(absolute.err).size(), 1u);
}

TEST_F(CapctlTest, OpenBeneathMissingFileExitsFour) {
  ExpectFailure(Run({"open", "spool", "missing"}), kExitNotFound);
}

TEST_F(CapctlTest, ListShowsGrantedCapabilities) {
  Result r = Run({"list"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[0], StartsWith("NAME"));
  EXPECT_THAT(r.out, HasSubstr("motd"));
  EXPECT_THAT(r.out, HasSubstr(Path("spool")));
  EXPECT_THAT(r.out, HasSubstr("65536 bytes"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("secret")));
}

// The finding's policy: 1000 file capabilities, all granted to everyone,
// whose list is larger than one datagram ("capctl: list: message is 80080
// bytes; at most 65536 fit in one datagram").
TEST(CapctlListTest, ListsAPolicyLargerThanOneReply) {
  ASSERT_OK_AND_ASSIGN(auto broker,
                       BrokerProcess::Start(testing::ManyCapabilitiesPolicy(1000)));
  std::ostringstream out, err;
  ASSERT_EQ(RunCapctl({"--socket", broker->socket_path(), "list"}, out, err), kExitOk)
      << err.str();
  std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 1001u);
  EXPECT_THAT(lines[1], StartsWith("cap0000 "));
  EXPECT_THAT(lines[1000], StartsWith("cap0999 "));
}

// The broker names the first 8 principals a client matches and counts the
// rest: status shows both.
TEST(CapctlStatusTest, ShowsHowManyMorePrincipalsMatch) {
  std::string principals;
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(&principals, i == 0 ? "" : ", ", "( name = \"p", i,
                    "\", match = ( anyUser = true ) )");
  }
  ASSERT_OK_AND_ASSIGN(auto broker, BrokerProcess::Start(absl::StrCat(
                                        "( principals = [ ", principals, " ] )")));
  std::ostringstream out, err;
  ASSERT_EQ(RunCapctl({"--socket", broker->socket_path(), "status"}, out, err), kExitOk)
      << err.str();
  EXPECT_THAT(out.str(), HasSubstr("principals:  p0, p1, p2, p3, p4, p5, p6, p7 and 2 more\n"));
}

TEST_F(CapctlTest, StatusShowsCountersAndIdentity) {
  Run({"request", "motd"});
  Run({"request", "secret"});
  Result r = Run({"status"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("grants:      1\n"));
  EXPECT_THAT(r.out, HasSubstr("denials:     1\n"));
  EXPECT_THAT(r.out, HasSubstr(Path("policy.capnp")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("uid ", getuid())));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("pid ", getpid())));
  EXPECT_THAT(r.out, HasSubstr("principals:  tester\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("deleted (rm)")));  // only when some were
}

// As reported: after `rm` of the audit log, the broker said on stderr how
// many lines went to the deleted file, and status said nothing of them.
// Here the path cannot be opened again (a symlink put there), so the
// grant's line, written at the first check, goes to the deleted file.
TEST_F(CapctlTest, StatusCountsAuditLinesLostWithADeletedLogFile) {
  const std::string& path = broker_->audit_path();
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_EQ(symlink((broker_->dir() + "/elsewhere").c_str(), path.c_str()), 0);
  Result granted = Run({"request", "motd"});
  ASSERT_EQ(granted.code, kExitOk) << granted.err;
  Result r = Run({"status"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("audit log:   1 line written to the log's file after it was "
                               "deleted (rm), lost with it (the broker's standard error says "
                               "when)\n"));
  EXPECT_THAT(r.out, HasSubstr("symlink"));  // why the path was not opened again
}

// As reported: status said "N lines could not be written (their grants
// were withheld)" for every lost line, but a lost denial's line withholds
// nothing. It says grants whose line was lost were withheld, without
// calling every lost line a grant's.
TEST_F(CapctlTest, StatusSaysWhichLostAuditLinesWithheldAGrant) {
  testing::BrokerOptions options;
  options.audit_log_full = true;  // every write fails
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<BrokerProcess> full,
                       BrokerProcess::StartWith(kPolicy, options));
  const std::string socket = full->socket_path();
  {
    UniqueFd motd(open((full->dir() + "/motd").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_GE(motd.get(), 0);
  }
  Result denied = RunRaw({"--socket", socket, "request", "secret"});
  EXPECT_NE(denied.code, kExitOk);
  Result status = RunRaw({"--socket", socket, "status"});
  ASSERT_EQ(status.code, kExitOk) << status.err;
  EXPECT_THAT(status.out, HasSubstr("audit log:   1 line could not be written (grants whose "
                                    "line was lost were withheld, never delivered)\n"));
  EXPECT_THAT(status.out, HasSubstr("grants:      0\n"));
  Result withheld = RunRaw({"--socket", socket, "request", "motd"});
  EXPECT_NE(withheld.code, kExitOk);
  EXPECT_THAT(withheld.err, HasSubstr("audit line"));
  status = RunRaw({"--socket", socket, "status"});
  ASSERT_EQ(status.code, kExitOk) << status.err;
  EXPECT_THAT(status.out, HasSubstr("audit log:   2 lines could not be written (grants whose "
                                    "line was lost were withheld, never delivered)\n"));
}

// As reported: after a refused reload and a successful one, status still
// showed the refusal ("1 refused; last: ...'reed'..."). It shows the last
// reload's outcome, and when.
TEST_F(CapctlTest, StatusShowsTheLastReloadNotAStaleRefusal) {
  ASSERT_OK(broker_->RewritePolicy(
      "( capabilities = [ ( name = \"m\", file = ( path = \"/etc/motd\", access = reed ) ) ] )"));
  ASSERT_EQ(kill(broker_->pid(), SIGHUP), 0);
  std::string refused = StatusUntil("refused in all");
  EXPECT_THAT(refused, HasSubstr("refused, the policy before stays: "));
  EXPECT_THAT(refused, HasSubstr("'reed'"));
  EXPECT_THAT(refused, HasSubstr("; 1 refused in all\n"));

  ASSERT_OK(broker_->RewritePolicy(kPolicy));
  ASSERT_EQ(kill(broker_->pid(), SIGHUP), 0);
  std::string installed = StatusUntil("installed");
  EXPECT_THAT(installed, ::testing::ContainsRegex(
                             "reloads:     last [0-9]+s ago: installed \\(generation 2\\); "
                             "1 refused in all\n"));
  EXPECT_THAT(installed, ::testing::Not(HasSubstr("reed")));
}

TEST_F(CapctlTest, PolicyCheckAcceptsTheBrokersPolicy) {
  std::string path = Path("policy.capnp");
  Result r = RunRaw({"policy", "check", path});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  // It says whom it judged the file's owner against: it runs as the
  // invoking user, not as the broker.
  EXPECT_EQ(r.out, absl::StrCat(
                       path, ": ok (4 capabilities, 1 principals, 0 services)\n",
                       getuid() == 0
                           ? "note: the file's owner was judged as for a broker running as "
                             "root (root must own it)\n"
                           : absl::StrCat("note: the file's owner was judged as for a broker "
                                          "running as uid ", geteuid(), ", the invoking user "
                                          "(root or uid ", geteuid(), " may own it); a broker "
                                          "running as root accepts only a file root owns\n")));
}

// Each error is printed once, on stderr (the exit code says rejected), in
// the FILE:LINE:COL form editors jump to, and a verdict last.
TEST_F(CapctlTest, PolicyCheckRejectsBadTextPrintingEachErrorOnce) {
  std::string path = Path("bad.capnp");
  WriteFile("bad.capnp", "( capabilities = [ ( name = \"x\" ) ] )", 0600);
  Result r = RunRaw({"policy", "check", path});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, absl::StrCat(path, ":1:20: capability 'x' has no kind: write file = (...), "
                                "directory = (...) or memory = (...)\n",
                                "capctl: ", path, ": rejected (1 error)\n"));

  WriteFile("bad2.capnp",
            "( capabilities = [ ( name = \"x\" ), ( name = \"y\" ) ] )", 0600);
  r = RunRaw({"policy", "check", Path("bad2.capnp")});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "");
  std::vector<std::string> lines = Lines(r.err);
  ASSERT_EQ(lines.size(), 3u) << r.err;
  EXPECT_THAT(lines[0], HasSubstr("capability 'x' has no kind"));
  EXPECT_THAT(lines[1], HasSubstr("capability 'y' has no kind"));
  EXPECT_EQ(lines[2], absl::StrCat("capctl: ", Path("bad2.capnp"), ": rejected (2 errors)"));
}

// More errors than are shown: the verdict counts them all.
TEST_F(CapctlTest, PolicyCheckCountsErrorsNotShown) {
  std::string text = "( capabilities = [\n";
  for (int i = 0; i < 25; ++i) absl::StrAppend(&text, "( name = \"c", i, "\" ),\n");
  text += "] )";
  WriteFile("many.capnp", text, 0600);
  Result r = RunRaw({"policy", "check", Path("many.capnp")});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("5 more errors not shown\n"));
  EXPECT_THAT(r.err, HasSubstr(": rejected (25 errors)\n"));
}

// capctl cannot know the broker's --cgroup: a limit that needs one is a
// note, not an error.
TEST_F(CapctlTest, PolicyCheckNotesLimitsThatNeedACgroup) {
  WriteFile("limits.capnp", R"(( services = [ ( name = "s", command = [ "/bin/s" ],
      limits = ( memoryMax = 1048576, pidsMax = 8 ) ) ] ))", 0600);
  Result r = RunRaw({"policy", "check", Path("limits.capnp")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr(": ok (0 capabilities, 0 principals, 1 services)\n"
                               "note: service 's' sets memoryMax and pidsMax: capbrokerd "
                               "refuses this policy unless it runs with --cgroup DIR, a "
                               "delegated cgroup v2 directory whose cgroup.subtree_control "
                               "enables memory and pids\n"));
}

// capctl cannot know the hard limits of the broker that will load the
// file, and its own (a login shell's) are not the broker's (its unit's):
// a service limit above capctl's own hard limit is a note, not an error,
// saying what capbrokerd checks. One at the limit gets none.
TEST_F(CapctlTest, PolicyCheckNotesALimitAboveItsOwnHardLimit) {
  rlimit own;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &own), 0);
  ASSERT_NE(own.rlim_max, RLIM_INFINITY);
  WriteFile("above.capnp", absl::StrCat(R"(( services = [ ( name = "s", command = [ "/bin/s" ],
      limits = ( openFiles = )", own.rlim_max + 1, R"( ) ) ] ))"), 0600);
  Result r = RunRaw({"policy", "check", Path("above.capnp")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         "note: service 's' sets openFiles ", own.rlim_max + 1,
                         ", above this capctl's own hard RLIMIT_NOFILE, ", own.rlim_max,
                         ": capbrokerd refuses this policy if it is above its own hard limit "
                         "too (LimitNOFILE= in its systemd unit), which capctl cannot know\n")));
  WriteFile("at.capnp", absl::StrCat(R"(( services = [ ( name = "s", command = [ "/bin/s" ],
      limits = ( openFiles = )", own.rlim_max, R"( ) ) ] ))"), 0600);
  r = RunRaw({"policy", "check", Path("at.capnp")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("sets openFiles")));
}

// capctl cannot know who the broker that will load the file runs as: a
// service `user` or `group`, which only a root broker (or one of those ids)
// can use, is a note, not an error.
TEST_F(CapctlTest, PolicyCheckNotesAServiceUserOnlyARootBrokerCanUse) {
  WriteFile("user.capnp", R"(( services = [
      ( name = "s", command = [ "/bin/s" ], user = 1001, group = 1002 ),
      ( name = "t", command = [ "/bin/t" ], group = 1003 ),
      ( name = "u", command = [ "/bin/u" ] ) ] ))", 0600);
  Result r = RunRaw({"policy", "check", Path("user.capnp")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("note: service 's' sets user 1001 and group 1002: capbrokerd "
                               "refuses this policy unless it runs as root or as uid 1001 "
                               "and gid 1002 (a broker that is not root can run services "
                               "only as itself)\n"));
  EXPECT_THAT(r.out, HasSubstr("note: service 't' sets group 1003: capbrokerd refuses this "
                               "policy unless it runs as root or as gid 1003 (a broker that "
                               "is not root can run services only as itself)\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("service 'u' sets")));
}

// A script is run by its interpreter, and the kernel reports that as the
// client's executable: an `exe` rule naming a script never matches. Not an
// error (it fails closed), but a note; a binary gets none.
TEST_F(CapctlTest, PolicyCheckNotesAnExeThatIsAScript) {
  WriteFile("backup.sh", "#!/bin/sh\necho backing up\n", 0755);
  WriteFile("tool", std::string("\x7f" "ELF\x02\x01\x01", 7), 0755);
  WriteFile("exe.capnp", absl::StrCat(R"(( capabilities = [ ( name = "m", memory = ( size = 4096 ) ) ],
      principals = [
        ( name = "backup", match = ( uid = 1000, exe = ")", Path("backup.sh"), R"(" ), grants = [ "m" ] ),
        ( name = "tool", match = ( uid = 1000, exe = ")", Path("tool"), R"(" ), grants = [ "m" ] ) ] ))"),
            0600);
  Result r = RunRaw({"policy", "check", Path("exe.capnp")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         "note: principal 'backup': exe ", Path("backup.sh"),
                         " is a script (its file starts with #!): the kernel runs its "
                         "interpreter and reports that as the client's executable, never the "
                         "script, so this rule will never match\n")));
  EXPECT_THAT(r.out, Not(HasSubstr("principal 'tool'")));
}

TEST_F(CapctlTest, PolicyCheckRejectsWritableByOthers) {
  WriteFile("open.capnp", "()", 0600);
  ASSERT_EQ(chmod(Path("open.capnp").c_str(), 0666), 0);
  ExpectFailure(RunRaw({"policy", "check", Path("open.capnp")}), kExitFailure);
}

TEST_F(CapctlTest, PolicyCheckMissingFile) {
  ExpectFailure(RunRaw({"policy", "check", Path("none.capnp")}), kExitFailure);
}

// A path ending in '/' ("DIR/") is a file that cannot be checked, one
// "capctl: " line: it was printed as the parser's lines are, then
// "rejected (1 error)". The path is shown once, by the loader's reason:
// "capctl: DIR/: the policy DIR/ ends in '/'" showed it twice.
TEST_F(CapctlTest, PolicyCheckOfADirectoryIsNoParseError) {
  const std::string dir = broker_->dir() + "/";
  Result r = RunRaw({"policy", "check", dir});
  ExpectFailure(r, kExitFailure);
  EXPECT_EQ(r.err, absl::StrCat("capctl: policy check: the policy ", dir,
                                " ends in '/', so it names no file: give the path of a file\n"));
}

// So is every file that cannot be read: the loader's reason names it.
TEST_F(CapctlTest, PolicyCheckNamesAFileItCannotReadOnce) {
  for (const std::string& path :
       {Path("none.capnp"), broker_->dir() + "/.", broker_->dir() + "/no-dir/p.capnp"}) {
    SCOPED_TRACE(path);
    Result r = RunRaw({"policy", "check", path});
    ExpectFailure(r, kExitFailure);
    EXPECT_THAT(r.err, StartsWith("capctl: policy check: "));
    const size_t first = r.err.find(path);
    ASSERT_NE(first, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(path, first + 1), std::string::npos) << r.err;
  }
}

// A path with a newline in it is shown escaped, in the one line, whole:
// the line was cut at the newline ("no broker socket at /tmp/x", a path
// never given, and the hint lost).
TEST_F(CapctlTest, APathWithANewlineStaysOnOneLineWhole) {
  Result socket = RunRaw({"--socket", "/tmp/x\ny", "list"});
  ExpectFailure(socket, kExitUnavailable);
  EXPECT_THAT(socket.err, HasSubstr("/tmp/x\\x0ay"));
  EXPECT_THAT(socket.err, HasSubstr("(is capbrokerd running?)"));

  // Refused for its directory (others may write /tmp), which the message
  // names with the path.
  Result policy = RunRaw({"policy", "check", "/tmp/no\nfile"});
  ExpectFailure(policy, kExitFailure);
  EXPECT_THAT(policy.err, HasSubstr("directory /tmp, which holds the policy /tmp/no\\x0afile, "
                                    "is writable by other users"));
}

// Who escapes: the loader, where a name enters a message; capctl shows the
// message escaped again (it need not trust the text), which leaves it as it
// is. So `policy check` of a policy under a directory named in Japanese
// shows the name as it is, and a newline the loader wrote as \x0a stays
// \x0a, not \x5cx0a. Before, capctl's error line escaped every byte
// outside ASCII: /tmp/\xe6\x97\xa5\xe6\x9c\xac.
TEST_F(CapctlTest, ErrorLinesKeepTextInAnyLanguageEscapedOnce) {
  const std::string dir = "/tmp/no-such-\xe6\x97\xa5\xe6\x9c\xac";
  Result r = RunRaw({"policy", "check", dir + "/p\n.capnp"});
  ExpectFailure(r, kExitFailure);
  EXPECT_EQ(r.err, absl::StrCat("capctl: policy check: ", dir, ", on the path to the policy ",
                                dir, "/p\\x0a.capnp, does not exist\n"));
  // An argument capctl echoes itself.
  Result request = Run({"request", "\xce\xa9\n"});
  ExpectFailure(request, kExitNotFound);
  EXPECT_THAT(request.err, StartsWith("capctl: request \xce\xa9\\x0a: no capability named "
                                      "'\xce\xa9\\x0a'"));
}

// Text capctl did not write reaches the terminal escaped, line by line:
// a capability path with an escape sequence and a newline in it (the
// policy's to choose), as `list` shows it, and a policy file's
// name in `policy check`'s lines, the ok line and the FILE:LINE:COL ones.
// Before, `list` printed the path raw: the ESC byte, and a line cut in two.
TEST(CapctlEscapeTest, TextFromTheBrokerAndFileNamesAreEscaped) {
  testing::TempDir dir;
  const std::string odd = dir.Join("a\x1b[31mb\nc");
  UniqueFd file(open(odd.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(file.valid());
  ASSERT_OK_AND_ASSIGN(
      auto broker,
      BrokerProcess::Start(absl::StrCat(
          R"(( capabilities = [ ( name = "odd", file = ( path = ")", dir.Join("a\\x1b[31mb\\nc"),
          R"(", access = read ) ) ],
  principals = [ ( name = "tester", match = ( uid = $UID ), grants = [ "odd" ] ) ] ))")));
  const std::string shown = dir.Join("a\\x1b[31mb\\x0ac");
  std::ostringstream out, err;
  ASSERT_EQ(RunCapctl({"--socket", broker->socket_path(), "list"}, out, err), kExitOk)
      << err.str();
  EXPECT_THAT(out.str(), HasSubstr(shown));
  EXPECT_THAT(out.str(), Not(HasSubstr("\x1b")));
  EXPECT_EQ(Lines(out.str()).size(), 2u) << out.str();

  const std::string good = dir.Join("ok\x1b[2J.capnp");
  const std::string bad = dir.Join("bad\x1b[2J.capnp");
  for (const auto& [path, text] : {std::pair{good, "( )"}, std::pair{bad, "( capabilities = 3 )"}}) {
    UniqueFd policy(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(policy.valid());
    ASSERT_EQ(write(policy.get(), text, strlen(text)), static_cast<ssize_t>(strlen(text)));
  }
  auto check = [](const std::string& path) {
    std::ostringstream out, err;
    int code = RunCapctl({"policy", "check", path}, out, err);
    return Result{code, out.str(), err.str()};
  };
  Result ok = check(good);
  EXPECT_EQ(ok.code, kExitOk) << ok.err;
  EXPECT_THAT(ok.out, StartsWith(dir.Join("ok\\x1b[2J.capnp: ok (")));
  Result rejected = check(bad);
  EXPECT_EQ(rejected.code, kExitFailure);
  EXPECT_THAT(rejected.err, StartsWith(dir.Join("bad\\x1b[2J.capnp:1:")));
  EXPECT_THAT(ok.out + rejected.err, Not(HasSubstr("\x1b")));
}

// Names in any language are shown as they are: a capability path with "é"
// in `list`, a policy file's name in `policy check`'s lines (the
// FILE:LINE:COL form editors jump to). Before, both showed \xc3\xa9.
TEST(CapctlEscapeTest, Utf8NamesAreShownAsTheyAre) {
  testing::TempDir dir;
  const std::string file = dir.Join("donn\xc3\xa9" "es");
  UniqueFd made(open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(made.valid());
  ASSERT_OK_AND_ASSIGN(
      auto broker,
      BrokerProcess::Start(absl::StrCat(
          R"(( capabilities = [ ( name = "data", file = ( path = ")", file,
          R"(", access = read ) ) ],
  principals = [ ( name = "tester", match = ( uid = $UID ), grants = [ "data" ] ) ] ))")));
  std::ostringstream out, err;
  ASSERT_EQ(RunCapctl({"--socket", broker->socket_path(), "list"}, out, err), kExitOk)
      << err.str();
  EXPECT_THAT(out.str(), HasSubstr(file + "\n"));

  const std::string bad = dir.Join("pol\xc3\xadtica.capnp");
  UniqueFd policy(open(bad.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(policy.valid());
  const std::string text = "( capabilities = 3 )";
  ASSERT_EQ(write(policy.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  std::ostringstream check_out, check_err;
  EXPECT_EQ(RunCapctl({"policy", "check", bad}, check_out, check_err), kExitFailure);
  EXPECT_THAT(check_err.str(), StartsWith(bad + ":1:"));
}

// The validator quotes what it found on disk: here where a symlink on a
// capability's path leads, a name with an escape sequence in it. Its
// error line reaches the terminal escaped, as the rest of capctl's output;
// before, it was printed raw, ESC and all.
TEST(CapctlEscapeTest, APolicyErrorQuotingWhatIsOnDiskIsEscaped) {
  testing::TempDir dir;
  const std::string target = dir.Join("t\x1b[2Jx");
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  UniqueFd made(open((target + "/f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(made.valid());
  ASSERT_EQ(symlink("t\x1b[2Jx", dir.Join("link").c_str()), 0);
  const std::string path = dir.Join("p.capnp");
  UniqueFd policy(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(policy.valid());
  const std::string text = absl::StrCat(R"(( capabilities = [ ( name = "f", file = ( path = ")",
                                        dir.Join("link/f"), R"(", access = read ) ) ] ))");
  ASSERT_EQ(write(policy.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  std::ostringstream out, err;
  EXPECT_EQ(RunCapctl({"policy", "check", path}, out, err), kExitFailure);
  EXPECT_THAT(err.str(), HasSubstr(absl::StrCat("resolves to ", dir.Join("t\\x1b[2Jx/f"))));
  EXPECT_THAT(err.str(), Not(HasSubstr("\x1b")));
}

TEST_F(CapctlTest, PolicyInitPrintsAPolicyThatChecks) {
  Result r = RunRaw({"policy", "init"});
  ASSERT_EQ(r.code, kExitOk);
  ASSERT_FALSE(r.out.empty());
  WriteFile("starter.capnp", r.out, 0600);
  Result check = RunRaw({"policy", "check", Path("starter.capnp")});
  EXPECT_EQ(check.code, kExitOk) << check.out << check.err;
}

// A stream socket at --socket (another program's, not a broker's): exit 5,
// unavailable, in one line that says what is there, not "Protocol wrong
// type for socket" and exit 1.
TEST(CapctlSocketTest, AStreamSocketIsUnavailable) {
  testing::TempDir dir;
  const std::string path = dir.Join("stream.sock");
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(address.sun_path));
  path.copy(address.sun_path, path.size());
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)),
            0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  std::ostringstream out, err;
  int code = RunCapctl({"--socket", path, "list"}, out, err);
  EXPECT_EQ(code, kExitUnavailable) << err.str();
  EXPECT_EQ(Lines(err.str()).size(), 1u) << err.str();
  EXPECT_THAT(err.str(), HasSubstr(absl::StrCat("the socket at ", path, " is not a broker's")));
  EXPECT_THAT(err.str(), Not(HasSubstr("Protocol wrong type")));
}

TEST_F(CapctlTest, Help) {
  for (const char* h : {"help", "--help"}) {
    Result r = RunRaw({h});
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_THAT(r.out, StartsWith("usage: capctl"));
  }
}

TEST_F(CapctlTest, HostileCommandLines) {
  const std::vector<std::vector<std::string>> usage_errors = {
      {},
      {"frobnicate"},
      {"--verbose", "list"},
      {"request"},
      {"request", "a", "b"},
      {"request", ""},
      {"request", "motd", "--access"},
      {"request", "motd", "--access", "execute"},
      {"request", "motd", "--access", ""},
      {"request", "motd", "--create"},
      {"open", "spool"},
      {"open", "", "job"},
      {"open", "spool", "job", "--mode", "99999"},
      {"open", "spool", "job", "--mode", "0999"},
      {"open", "spool", "job", "--mode", "-1"},
      {"open", "spool", "job", "--mode", "01777"},
      {"open", "spool", "job", "--create=yes"},
      {"list", "extra"},
      {"status", "extra"},
      {"policy"},
      {"policy", "check"},
      {"policy", "check", "a", "b"},
      {"policy", "init", "x"},
      {"policy", "frob"},
  };
  for (const auto& args : usage_errors) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    ExpectFailure(Run(args), kExitUsage);
  }
  // exec and connect: without their checks, some of these would run a
  // command (exec motd -- '' exits 127, as execvp("") fails).
  const std::vector<std::vector<std::string>> would_run = {
      {"exec", "motd", "/bin/true"},
      {"exec", "--", "/bin/true"},
      {"exec", "motd", "--"},
      {"exec", "motd", "--", ""},
      {"exec", "=x", "--", "/bin/true"},
      {"exec", "motd=", "--", "/bin/true"},
      {"exec", "motd=a:b", "--", "/bin/true"},
      {"connect", "kvstore", "/bin/true"},
      {"connect", "a", "b", "--", "/bin/true"},
      {"connect", "--", "/bin/true"},
      {"connect", "", "--", "/bin/true"},
      {"connect", "x", "--"},
      {"connect", "x", "--", ""},
  };
  for (const auto& args : would_run) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    ExpectUsageErrorInChild(args);
  }
  ExpectFailure(RunRaw({"--socket"}), kExitUsage);
  ExpectFailure(RunRaw({"--socket", "", "list"}), kExitUsage);
}

// A name longer than a policy's is refused by the client library before
// anything is sent, in the broker's words, naming the argument and its
// limit: one too long for a datagram (100000 bytes) too, which once failed
// with "message is 100104 bytes; at most 65536 fit in one datagram".
TEST_F(CapctlTest, ALongNameIsRefusedNamingItsLimit) {
  for (size_t length : {65, 60000, 100000}) {
    SCOPED_TRACE(length);
    Result r = Run({"request", std::string(length, 'a')});
    ExpectFailure(r, kExitFailure);
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat(": capability name is ", length,
                                              " bytes; at most 64\n")));
    EXPECT_LT(r.err.size(), 1000u) << "the name is echoed";
  }
  EXPECT_EQ(Run({"request", "motd"}).code, kExitOk);
}

// An argument echoed in an error line is bounded and shows control bytes
// as \xNN (as the broker does): the error's first line is short and
// contains `shows`.
void ExpectOneBoundedLine(const std::string& text, absl::string_view shows) {
  const std::string first = text.substr(0, text.find('\n'));
  EXPECT_THAT(first, StartsWith("capctl: "));
  EXPECT_LT(first.size(), 1000u) << "the argument is echoed unbounded";
  EXPECT_THAT(first, HasSubstr(shows));
}

TEST_F(CapctlTest, ArgumentsInErrorLinesAreBoundedAndEscaped) {
  // Not run: exec's failure line names the command.
  Result exec = RunInChild({"exec", "motd", "--", std::string(100000, 'a')});
  EXPECT_EQ(exec.code, kExitCannotExec);
  EXPECT_EQ(Lines(exec.out).size(), 1u) << exec.out.substr(0, 2000);
  // 128 bytes of each end: the half of 256.
  const std::string a_end(128, 'a');
  ExpectOneBoundedLine(exec.out, absl::StrCat(" ", a_end, "... (99744 bytes left out) ...",
                                              a_end, ": File name too long"));

  Result request = Run({"request", "a\nb"});
  ExpectFailure(request, kExitNotFound);
  ExpectOneBoundedLine(request.err, "capctl: request a\\x0ab: ");

  // Not only ASCII controls: U+009B (CSI) is \xc2\x9b in UTF-8, and xterm
  // and VTE act on it. It is escaped although it is valid UTF-8, as the
  // broker's policy excerpts escape it.
  Result csi = Run({"request", "a\xc2\x9b" "b"});
  ExpectFailure(csi, kExitNotFound);
  ExpectOneBoundedLine(csi.err, "capctl: request a\\xc2\\x9bb: ");
  EXPECT_THAT(csi.err, Not(HasSubstr("\xc2\x9b")));

  // Usage errors: the one line, then the usage.
  Result command = Run({"foo\nbar"});
  ExpectFailure(command, kExitUsage);
  ExpectOneBoundedLine(command.err, "capctl: unknown command \"foo\\x0abar\"");

  Result fd_name = Run({"exec", "motd=x\ny", "--", "/bin/true"});
  ExpectFailure(fd_name, kExitUsage);
  ExpectOneBoundedLine(fd_name.err, "capctl: exec: bad fd name \"x\\x0ay\"");

  // Escaping does not lift the bound: 100 KB of control bytes.
  Result controls = Run({std::string(100000, '\x1b')});
  ExpectFailure(controls, kExitUsage);
  std::string esc_end;
  for (int i = 0; i < 32; ++i) esc_end += "\\x1b";  // 128 bytes shown
  ExpectOneBoundedLine(controls.err, absl::StrCat("\"", esc_end, "... (99936 bytes left out) ...",
                                                  esc_end, "\""));
  EXPECT_THAT(controls.err, Not(HasSubstr("\x1b")));
}

// A reason longer than its bound keeps its end, where the cause is: here
// a directory capability whose path of some 640 bytes is missing. Before,
// the line was cut at 512 bytes, in the middle of the path ("...ffff...
// (671 bytes)"), and "no such file or directory" was not shown.
TEST(CapctlLongReasonTest, ALongReasonKeepsItsEnd) {
  std::string missing = "$DIR";
  for (int i = 0; i < 3; ++i) absl::StrAppend(&missing, "/", std::string(200, 'f'));
  ASSERT_OK_AND_ASSIGN(
      auto broker,
      BrokerProcess::Start(absl::StrCat(
          R"(( capabilities = [ ( name = "long", directory = ( path = ")", missing,
          R"(", access = read ) ) ],
  principals = [ ( name = "tester", match = ( uid = $UID ), grants = [ "long" ] ) ] ))")));
  std::ostringstream out, err;
  EXPECT_EQ(RunCapctl({"--socket", broker->socket_path(), "request", "long"}, out, err),
            kExitNotFound);
  EXPECT_EQ(Lines(err.str()).size(), 1u) << err.str();
  EXPECT_THAT(err.str(), StartsWith("capctl: request long: "));
  EXPECT_THAT(err.str(), HasSubstr(" bytes left out) ..."));
  EXPECT_THAT(err.str(), ::testing::EndsWith("fff: no such file or directory\n"));
  EXPECT_LT(err.str().size(), 600u) << "the reason is not bounded";
}

TEST_F(CapctlTest, ExecHandsOverFdsAndListenVariables) {
  // An fd capctl inherited without close-on-exec (dup2 clears the flag)
  // must not reach the program.
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(dup2(null.get(), 40), 40);
  UniqueFd leaky(40);
  Result r = RunInChild(
      {"exec", "motd", "spool=jobs", "--", "/bin/sh", "-c",
       "cat <&3; echo \"$LISTEN_FDS $LISTEN_FDNAMES $LISTEN_PID $$\"; "
       "test -d /proc/self/fd/4 && echo dir4; "
       // Probes each fd without opening anything: a pipeline or a glob would
       // add its own fds to what it lists.
       "for n in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 40; do "
       "[ -e /proc/$$/fd/$n ] && printf '%s ' $n; done; echo"});
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0], "hello from the broker");
  EXPECT_EQ(lines[1], absl::StrCat("2 motd:jobs ", child_pid_, " ", child_pid_));
  EXPECT_EQ(lines[2], "dir4");
  // Only stdio and the two capabilities: the broker connection is closed.
  EXPECT_EQ(lines[3], "0 1 2 3 4 ") << r.out;
}

// This process's pidfd inode id as systemd reads it (pidfs: fstat's
// st_ino of a pidfd), "" without pidfs.
std::string OwnPidfdId() {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
  struct statfs fs;
  struct stat st;
  constexpr long kPidfsMagic = 0x50494446;  // PID_FS_MAGIC
  if (!pidfd || fstatfs(pidfd.get(), &fs) != 0 || fs.f_type != kPidfsMagic ||
      fstat(pidfd.get(), &st) != 0) {
    return "";
  }
  return std::to_string(st.st_ino);
}

// systemd 258's sd_listen_fds() returns 0 when LISTEN_PIDFDID is set and is
// not the caller's own pidfd id: one inherited from a socket-activated
// parent must not reach CMD. The exec is in place, so capctl's own id is
// CMD's.
TEST_F(CapctlTest, ExecSetsOrClearsLISTEN_PIDFDID) {
  Result r = RunInChild({"exec", "motd", "--", "/bin/sh", "-c",
                         "echo \"${LISTEN_PIDFDID-unset} $WANT\""},
                        [] {
                          setenv("LISTEN_PIDFDID", "1", 1);
                          std::string id = OwnPidfdId();
                          setenv("WANT", id.empty() ? "unset" : id.c_str(), 1);
                        });
  ASSERT_EQ(r.code, kExitOk) << r.out;
  std::vector<std::string> words =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(r.out), ' ');
  ASSERT_EQ(words.size(), 2u) << r.out;
  EXPECT_EQ(words[0], words[1]) << r.out;
  EXPECT_NE(words[0], "1") << r.out;
}

// What follows "--" is the program's: a --help there is not capctl's.
TEST_F(CapctlTest, ExecLeavesTheCommandsHelpAlone) {
  Result r = RunInChild(
      {"exec", "motd", "--", "/bin/sh", "-c", "printf '%s\\n' \"$@\"", "sh", "--help", "-h"});
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_EQ(r.out, "--help\n-h\n");
  // connect reads its command line alike: it asks the broker for the
  // service (there is none) instead of printing its usage.
  Result connect = Run({"connect", "nosuch", "--", "/bin/true", "--help"});
  EXPECT_NE(connect.code, kExitOk);
  EXPECT_NE(connect.code, kExitUsage) << connect.err;
  EXPECT_EQ(connect.out, "");
}

TEST_F(CapctlTest, ExecCommandNotFoundExits127) {
  Result r = RunInChild({"exec", "motd", "--", "/nonexistent/command"});
  EXPECT_EQ(r.code, kExitCannotExec);
  EXPECT_EQ(r.out, "capctl: exec /nonexistent/command: No such file or directory\n");
}

// Placing the fds needs no number beyond the layout's: with the fd table
// full but for the broker connection and the two capabilities, the
// command runs.
TEST_F(CapctlTest, ExecAtAFullFdTableRunsTheCommand) {
  Result r = RunInChild({"exec", "motd", "spool", "--", "/bin/echo", "ran"}, [] {
    rlimit limit{64, 64};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(90);
    std::vector<int> filler;
    for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
    // Three numbers left, for the broker connection and the two
    // capabilities.
    if (filler.size() < 3) _exit(91);
    for (int i = 0; i < 3; ++i) close(filler[filler.size() - 1 - i]);
  });
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_EQ(r.out, "ran\n");
}

// The capctl program opens /dev/null on stdio fds it was started without,
// before anything of its own can land there; the program it runs has them.
TEST_F(CapctlTest, StdioClosedAtStartIsDevNull) {
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd read_end(pipefd[0]);
  UniqueFd write_end(pipefd[1]);
  std::string capctl = testing::RunfilePath("sdk/capctl/capctl");
  std::string socket = broker_->socket_path();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (dup2(write_end.get(), 1) != 1) _exit(90);
    close(0);
    close(2);
    execl(capctl.c_str(), "capctl", "--socket", socket.c_str(), "exec", "motd", "--",
          "/bin/sh", "-c", "readlink /proc/$$/fd/0 /proc/$$/fd/2; echo $LISTEN_FDS", nullptr);
    _exit(91);
  }
  write_end.reset();
  std::string output;
  char buf[4096];
  for (ssize_t n; (n = read(read_end.get(), buf, sizeof buf)) > 0;) output.append(buf, n);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(output, "/dev/null\n/dev/null\n1\n");
}

// Runs the capctl program with `args` and its stdout on `stdout_path`;
// the exit code and what it wrote to stderr.
Result RunProgramWithStdout(const std::vector<std::string>& args,
                            const std::string& stdout_path) {
  int pipefd[2];
  EXPECT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd read_end(pipefd[0]);
  UniqueFd write_end(pipefd[1]);
  std::string capctl = testing::RunfilePath("sdk/capctl/capctl");
  std::vector<char*> argv{capctl.data()};
  std::vector<std::string> copies(args);
  for (std::string& a : copies) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(stdout_path.c_str(), O_WRONLY | O_CLOEXEC);
    if (out < 0 || dup2(out, 1) != 1 || dup2(write_end.get(), 2) != 2) _exit(90);
    execv(capctl.c_str(), argv.data());
    _exit(91);
  }
  EXPECT_GT(pid, 0);
  write_end.reset();
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = read(read_end.get(), buf, sizeof buf)) > 0;) err.append(buf, n);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  return {WEXITSTATUS(status), "", err};
}

// Output that cannot be written (a full disk: /dev/full) is a failure, not
// a success with a truncated file: one line on stderr, exit 1.
TEST_F(CapctlTest, AFailedWriteToStdoutFails) {
  const std::string socket = broker_->socket_path();
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"policy", "init"}, {"help"}, {"list"}, {"status"}, {"services"},
           {"request", "motd"}, {"open", "spool", "job"}, {"policy", "check", "POLICY"}}) {
    for (std::string& a : args) {
      if (a == "POLICY") a = Path("policy.capnp");
    }
    args.insert(args.begin(), {"--socket", socket});
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = RunProgramWithStdout(args, "/dev/full");
    EXPECT_EQ(r.code, kExitFailure);
    EXPECT_EQ(r.err, "capctl: write to stdout: No space left on device\n");
  }
}

// A command that failed on its own keeps its exit code and its one line.
TEST_F(CapctlTest, AFailedCommandWithUnwritableStdoutKeepsItsOwnError) {
  Result r = RunProgramWithStdout({"--socket", broker_->socket_path(), "request", "secret"},
                                  "/dev/full");
  ExpectFailure(r, kExitPermissionDenied);
  EXPECT_THAT(r.err, Not(HasSubstr("stdout")));
}

// RunCapctl checks the stream it was given, whatever it is.
TEST(CapctlOutputTest, AStreamThatFailedIsReported) {
  std::ostringstream out, err;
  out.setstate(std::ios::badbit);
  EXPECT_EQ(RunCapctl({"policy", "init"}, out, err), kExitFailure);
  EXPECT_THAT(err.str(), StartsWith("capctl: write to stdout: "));
  EXPECT_EQ(Lines(err.str()).size(), 1u) << err.str();
}

// Output larger than FdOutput's buffer arrives whole and in order.
TEST(FdOutputTest, WritesEverythingInOrder) {
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd read_end(pipefd[0]);
  UniqueFd write_end(pipefd[1]);
  std::string text;
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&text, i, "\n");  // ~14 KB
  ASSERT_LT(text.size(), 65536u);  // fits the pipe: no reader needed
  {
    FdOutput buffer(write_end.get());
    std::ostream out(&buffer);
    out << text;
    out.flush();
    ASSERT_TRUE(out.good());
  }
  write_end.reset();
  std::string read_back;
  char buf[4096];
  for (ssize_t n; (n = read(read_end.get(), buf, sizeof buf)) > 0;) read_back.append(buf, n);
  EXPECT_EQ(read_back, text);
}

// What could not be written is kept: a retried flush fails again, with
// errno saying why, however long ago the first failure was.
TEST(FdOutputTest, AFailedWriteFailsAgainWithErrno) {
  UniqueFd full(open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full.valid());
  FdOutput buffer(full.get());
  std::ostream out(&buffer);
  out << std::string(10000, 'x');  // past the buffer: a write fails here
  EXPECT_TRUE(out.bad());
  errno = 0;
  out.clear();
  out.flush();
  EXPECT_TRUE(out.bad());
  EXPECT_EQ(errno, ENOSPC);
}

TEST_F(CapctlTest, ExecDeniedRunsNothing) {
  Result r = Run({"exec", "motd", "secret", "--", "/bin/echo", "ran"});
  ExpectFailure(r, kExitPermissionDenied);
  EXPECT_EQ(r.out, "");
}

// A capability exec could not get is named after exec, the command that
// ran, not after request (once "capctl: request nosuch: ...").
TEST_F(CapctlTest, ExecNamesItselfWhenACapabilityIsRefused) {
  Result r = Run({"exec", "nosuch", "--", "/bin/true"});
  ExpectFailure(r, kExitNotFound);
  EXPECT_THAT(r.err, StartsWith("capctl: exec nosuch: "));
  EXPECT_EQ(r.out, "");
}

// exec and connect say first what to ask for (a NAME, one SERVICE), then
// that the "--" is missing: "capctl connect" alone once said "connect
// needs -- before the command".
TEST_F(CapctlTest, ExecAndConnectSayWhatIsMissingFirst) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"exec"}, "exec needs at least one NAME"},
      {{"exec", "motd"}, "exec needs -- between the NAMEs and the command"},
      {{"exec", "motd", "/bin/true"}, "exec needs -- between the NAMEs and the command"},
      {{"connect"}, "connect takes one SERVICE"},
      {{"connect", "kvstore"}, "connect needs -- between SERVICE and the command"},
      {{"connect", "kvstore", "/bin/true"}, "connect needs -- between SERVICE and the command"},
      {{"connect", "a", "b", "--", "/bin/true"}, "connect takes one SERVICE"},
  };
  for (const auto& [args, why] : cases) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = ExpectUsageErrorInChild(args);
    EXPECT_THAT(r.err, StartsWith(absl::StrCat("capctl: ", why, "\n")));
  }
}

// LISTEN_FDNAMES takes what systemd's fdname_is_valid takes: printable
// ASCII and the space, not ':' (the separator), at most 255 bytes.
TEST_F(CapctlTest, ExecTakesTheFdNamesSystemdTakes) {
  Result r = RunInChild({"exec", "motd=a b", "spool=~!#", "--", "/bin/sh", "-c",
                         "printf '%s\\n' \"$LISTEN_FDNAMES\""});
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_EQ(r.out, "a b:~!#\n");
  Result longest = RunInChild({"exec", "motd=" + std::string(255, 'n'), "--", "/bin/true"});
  EXPECT_EQ(longest.code, kExitOk) << longest.out;
  for (const std::string& name :
       {std::string("a:b"), std::string("a\tb"), std::string("a\x7f"), std::string("caf\xc3\xa9"),
        std::string(256, 'n')}) {
    SCOPED_TRACE(name);
    Result r = ExpectUsageErrorInChild({"exec", "motd=" + name, "--", "/bin/true"});
    EXPECT_THAT(r.err, StartsWith("capctl: exec: bad fd name \""));
    EXPECT_THAT(r.err, HasSubstr("\" (at most 255 bytes of printable ASCII or spaces, not ':', "
                                 "as systemd takes)\n"));
  }
  // Named after the command, as every other error line is.
  for (const std::string& spec : {std::string("motd="), std::string("=x")}) {
    SCOPED_TRACE(spec);
    Result r = ExpectUsageErrorInChild({"exec", spec, "--", "/bin/true"});
    EXPECT_THAT(r.err, StartsWith(absl::StrCat("capctl: exec: empty name in \"", spec, "\"\n")));
  }
}

// A broker that takes the connection and never answers (one stuck on a
// hung file system, or another program at the socket's path): --timeout
// ends the wait, with exit 5 and one line saying so. Run in a child that
// SIGALRM ends should it hang (a liveness bound, not a measure of speed).
TEST(CapctlTimeoutTest, ABrokerThatNeverAnswersExitsFive) {
  testing::TempDir dir;
  const std::string path = dir.Join("broker.sock");
  for (const char* timeout : {"--timeout=0.1", "--timeout"}) {
    SCOPED_TRACE(timeout);
    testing::ChildResult child = testing::RunInChild([&] {
      alarm(30);
      UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      path.copy(address.sun_path, sizeof(address.sun_path) - 1);
      if (!listener.valid() ||
          bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) !=
              0 ||
          listen(listener.get(), 8) != 0) {
        return std::string("no listener");
      }
      std::vector<std::string> args = {"--socket", path, timeout};
      if (std::string(timeout) == "--timeout") args.push_back("0.1");
      args.push_back("list");
      std::ostringstream out, err;
      const int code = RunCapctl(args, out, err);
      unlink(path.c_str());
      return absl::StrCat(code, " ", out.str(), err.str());
    });
    ASSERT_TRUE(WIFEXITED(child.wait_status)) << "hung or crashed: " << child.wait_status;
    EXPECT_EQ(child.output,
              absl::StrCat(kExitUnavailable, " capctl: list: the broker did not answer within "
                           "100ms (--timeout SECONDS sets how long capctl waits; 0: no limit)\n"));
  }
}

TEST_F(CapctlTest, TimeoutOption) {
  for (const char* timeout : {"0", "1", "2.5", "690"}) {
    Result r = Run({"--timeout", timeout, "list"});
    EXPECT_EQ(r.code, kExitOk) << timeout << ": " << r.err;
  }
  // Either order of the global options.
  EXPECT_EQ(RunRaw({"--timeout=5", "--socket", broker_->socket_path(), "list"}).code, kExitOk);
  for (const char* bad : {"", "-1", "abc", "1e3", "inf", "nan", "0x10", ".5", "1.", "1,5",
                          " 1", "1 ", "+1", "01", "00.5", "1000000000"}) {
    SCOPED_TRACE(bad);
    Result r = Run({"--timeout", bad, "list"});
    ExpectFailure(r, kExitUsage);
    EXPECT_THAT(r.err, HasSubstr("--timeout"));
  }
  ExpectFailure(RunRaw({"--timeout"}), kExitUsage);
}

// PlaceInheritedFds with sources inside the target range, swapped: run in a
// child, since it takes over fds 3 and 4.
TEST(FdPlacementTest, SwapsFdsInsideTheTargetRange) {
  pid_t pid = fork();
  if (pid == 0) {
    // Opened above the range first, so that setting up 3 and 4 closes
    // nothing the test still needs.
    int a = fcntl(open("/", O_RDONLY | O_CLOEXEC | O_DIRECTORY), F_DUPFD_CLOEXEC, 20);
    int b = fcntl(open("/dev/null", O_RDONLY | O_CLOEXEC), F_DUPFD_CLOEXEC, 30);
    if (a < 0 || b < 0) _exit(9);
    // /dev/null at 3 and the directory at 4.
    if (dup3(b, 3, O_CLOEXEC) < 0 || dup3(a, 4, O_CLOEXEC) < 0) _exit(10);
    close(a);
    close(b);
    std::vector<UniqueFd> fds;
    fds.emplace_back(3);  // /dev/null, wanted at 3
    fds.emplace_back(4);  // "/", wanted at 4
    std::swap(fds[0], fds[1]);  // now "/" first: it must land at 3
    if (!PlaceInheritedFds(std::move(fds)).ok()) _exit(11);
    struct stat s3, s4;
    if (fstat(3, &s3) != 0 || fstat(4, &s4) != 0) _exit(12);
    if (!S_ISDIR(s3.st_mode) || !S_ISCHR(s4.st_mode)) _exit(13);
    if ((fcntl(3, F_GETFD) & FD_CLOEXEC) || (fcntl(4, F_GETFD) & FD_CLOEXEC)) _exit(14);
    // The temporary high copies are gone.
    if (fcntl(5, F_GETFD) != -1 || fcntl(6, F_GETFD) != -1) _exit(15);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// PlaceInheritedFds under a small fd limit, run in a child whose fd table
// holds only stdio and the result pipe (at kPlacementLimit - 1).
constexpr int kPlacementLimit = 64;

std::string InSmallFdTable(const std::function<std::string()>& body) {
  testing::ChildResult r = testing::RunInChildWithFd([&](int* out_fd) -> std::string {
    if (dup3(*out_fd, kPlacementLimit - 1, O_CLOEXEC) < 0) return "dup3 failed";
    *out_fd = kPlacementLimit - 1;
    if (syscall(SYS_close_range, 3, kPlacementLimit - 2, 0) != 0 ||
        syscall(SYS_close_range, kPlacementLimit, ~0U, 0) != 0) {
      return "close_range failed";
    }
    rlimit limit{kPlacementLimit, kPlacementLimit};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return "setrlimit failed";
    return body();
  });
  if (!WIFEXITED(r.wait_status) || WEXITSTATUS(r.wait_status) != 0) {
    return absl::StrCat("child wait status ", r.wait_status, ": ", r.output);
  }
  return r.output;
}

// A memfd named `name`: /proc/self/fd shows which fd landed where.
UniqueFd NamedFd(const std::string& name) {
  return UniqueFd(memfd_create(name.c_str(), MFD_CLOEXEC));
}

// "" when fd `fd` is the memfd `name`, open without FD_CLOEXEC.
std::string Inherited(int fd, const std::string& name) {
  char link[256];
  ssize_t n = readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), link, sizeof link);
  std::string is = n < 0 ? "closed" : std::string(link, n);
  if (is != absl::StrCat("/memfd:", name, " (deleted)")) {
    return absl::StrCat("fd ", fd, " is ", is, ", not ", name, "; ");
  }
  if (fcntl(fd, F_GETFD) != 0) return absl::StrCat("fd ", fd, " is close-on-exec; ");
  return "";
}

// capctl's own case: the broker connection took 3 and the capabilities
// came at 4, 5, ...; the connection is closed. Placing them at 3, 4, ...
// needs no free number more, even when they are most of the table.
TEST(FdPlacementTest, PlacesMoreThanHalfTheFdLimitAtAFullTable) {
  EXPECT_EQ(InSmallFdTable([]() -> std::string {
              constexpr int kCount = 40;
              UniqueFd connection = NamedFd("connection");
              if (connection.get() != 3) return "the connection is not at 3";
              std::vector<UniqueFd> fds;
              for (int i = 0; i < kCount; ++i) fds.push_back(NamedFd(absl::StrCat("fd", i)));
              if (fds.back().get() != 3 + kCount) return "the fds are not at 4..";
              std::vector<UniqueFd> filler;  // the rest of the table
              for (UniqueFd fd; (fd = NamedFd("filler")).valid();) filler.push_back(std::move(fd));
              connection.reset();  // fd 3: the one number free
              absl::Status placed = PlaceInheritedFds(std::move(fds));
              if (!placed.ok()) return placed.ToString();
              std::string wrong;
              for (int i = 0; i < kCount; ++i) wrong += Inherited(3 + i, absl::StrCat("fd", i));
              // The sources are closed: the last one's number is free again.
              if (fcntl(3 + kCount, F_GETFD) != -1) wrong += "the last source is still open";
              return wrong.empty() ? "ok" : wrong;
            }),
            "ok");
}

// An fd already at its number stays there, made inheritable.
TEST(FdPlacementTest, AnFdAlreadyInPlaceIsKeptInheritable) {
  EXPECT_EQ(InSmallFdTable([]() -> std::string {
              std::vector<UniqueFd> fds;
              fds.push_back(NamedFd("first"));   // at 3
              fds.push_back(NamedFd("other"));   // at 4, not wanted
              fds.push_back(NamedFd("second"));  // at 5, wanted at 4
              fds.erase(fds.begin() + 1);
              absl::Status placed = PlaceInheritedFds(std::move(fds));
              if (!placed.ok()) return placed.ToString();
              std::string wrong = Inherited(3, "first") + Inherited(4, "second");
              if (fcntl(5, F_GETFD) != -1) wrong += "fd 5 is still open";
              return wrong.empty() ? "ok" : wrong;
            }),
            "ok");
}

// Only a cycle needs a number above the range: at a full table it fails,
// with a status that says why, and the fds are closed.
TEST(FdPlacementTest, ACycleAtAFullTableFailsWithWhy) {
  std::string result = InSmallFdTable([]() -> std::string {
    std::vector<UniqueFd> fds;
    fds.push_back(NamedFd("a"));  // at 3
    fds.push_back(NamedFd("b"));  // at 4
    std::swap(fds[0], fds[1]);    // b wanted at 3, a at 4
    std::vector<UniqueFd> filler;
    for (UniqueFd fd; (fd = NamedFd("filler")).valid();) filler.push_back(std::move(fd));
    absl::Status placed = PlaceInheritedFds(std::move(fds));
    std::string closed = fcntl(3, F_GETFD) == -1 && fcntl(4, F_GETFD) == -1 ? "" : " (left open)";
    return placed.ToString() + closed;
  });
  EXPECT_THAT(result, HasSubstr("F_DUPFD_CLOEXEC): Too many open files"));
  EXPECT_THAT(result, Not(HasSubstr("left open")));
}

}  // namespace
}  // namespace capbroker

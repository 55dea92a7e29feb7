#include "broker/policy/policy_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "broker/policy/policy_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/foreign_link.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::string_view kPolicy =
    "( capabilities = [ ( name = \"motd\", file = ( path = \"/etc/motd\", access = read ) ) ],\n"
    "  principals = [ ( name = \"all\", match = ( anyUser = true ), grants = [ \"motd\" ] ) ] )\n";

class PolicyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/policyXXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << errno;
    dir_ = pattern;
    fds_ = testing::CountOpenFds();
  }

  // Every load, accepted or refused however far it got, closes what it
  // opened (the policy, the directories on its path): a broker reloads on
  // every SIGHUP, and a leak per refusal would add up.
  void TearDown() override { EXPECT_EQ(testing::CountOpenFds(), fds_) << "a load leaked fds"; }

  // Writes `text` to `name` in the test directory with exactly `mode`.
  std::string Write(absl::string_view name, absl::string_view text, mode_t mode = 0644) {
    std::string path = absl::StrCat(dir_, "/", name);
    absl::StatusOr<UniqueFd> fd =
        TakeFd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), "open");
    EXPECT_OK(fd);
    EXPECT_EQ(write(fd->get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    EXPECT_EQ(fchmod(fd->get(), mode), 0);  // exact, whatever the umask
    return path;
  }

  std::string dir_;
  int fds_ = -1;  // open in this process before the test
};

TEST_F(PolicyFileTest, LoadsAValidFile) {
  std::string path = Write("policy.cb", kPolicy);
  ASSERT_OK_AND_ASSIGN(Policy policy, LoadPolicyFile(path, BrokerContext()));
  EXPECT_EQ(policy.source(), path);
  ASSERT_NE(policy.FindCapability("motd"), nullptr);
  // Read-only for everyone but the owner is fine, so is 0600.
  EXPECT_OK(LoadPolicyFile(Write("private.cb", kPolicy, 0400), BrokerContext()));
}

TEST_F(PolicyFileTest, RefusesADirectoryOthersCanWrite) {
  ASSERT_EQ(mkdir((dir_ + "/open").c_str(), 0700), 0);
  ASSERT_EQ(chmod((dir_ + "/open").c_str(), 0777), 0);  // not sticky
  std::string path = Write("open/policy.cb", kPolicy, 0644);
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("directory ", dir_, "/open, on the path to the "
                                              "policy ", path, ", is writable by other "
                                              "users (mode 0777"))));
  // Sticky, as /tmp is, it is refused too: others cannot rename the policy
  // away, but whenever its name is free (an editor's save, a removal) they
  // may rename into it a file of root's they hold (a hard link, one root
  // wrote into their directory). Before, it was accepted.
  ASSERT_EQ(chmod((dir_ + "/open").c_str(), 01777), 0);
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("directory ", dir_, "/open, which holds the policy ", path,
                                    ", is writable by other users (mode 01777, owner uid ",
                                    geteuid(), "): even with the sticky bit, whenever the "
                                    "policy's name is free there (an editor's save, a "
                                    "removal) any of them could rename a file of root's they "
                                    "hold (a hard link, or one root wrote into a directory of "
                                    "theirs) to it; move the policy into a directory that "
                                    "only root or uid ", geteuid(), " can write (mkdir -m "
                                    "0755 ", dir_, "/open/capbroker, and load it as ", dir_,
                                    "/open/capbroker/policy.cb); never chmod a shared "
                                    "directory such as /tmp")));
  // Group-writable (and sticky) is no better.
  ASSERT_EQ(chmod((dir_ + "/open").c_str(), 01775), 0);
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is writable by other users (mode 01775")));
  // A directory of its own there, as the message says: the sticky one above
  // it is fine (no one else may move a directory of root's into it).
  ASSERT_EQ(chmod((dir_ + "/open").c_str(), 01777), 0);
  ASSERT_EQ(mkdir((dir_ + "/open/capbroker").c_str(), 0755), 0);
  EXPECT_OK(LoadPolicyFile(Write("open/capbroker/policy.cb", kPolicy), BrokerContext()));
}

// `capctl policy check` loads the file the same way, so it says the same.
TEST(PolicyFilePathTest, RefusesAPathThroughAnotherUsersSymlink) {
  testing::TempDir dir;
  std::optional<testing::ForeignLink> foreign = testing::MakeForeignLink(dir);
  if (!foreign.has_value()) GTEST_SKIP() << "cannot give a link away here: " << errno;
  std::string real = dir.WriteFile("run4/policy.cb", kPolicy, 0644);
  std::string path = foreign->link + "/policy.cb";
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("symlink ", foreign->link, " -> ", foreign->target,
                                              ", on the path to the policy ", path,
                                              ", is owned by uid 65534"))));
  EXPECT_OK(LoadPolicyFile(real, BrokerContext()));
  // Root's own link there is no better: another user could have renamed it
  // into the sticky directory from one of theirs. Before, it was followed.
  std::string sticky_link = dir.Join("tmp/by-root");
  ASSERT_EQ(symlink(foreign->target.c_str(), sticky_link.c_str()), 0);
  EXPECT_THAT(LoadPolicyFile(sticky_link + "/policy.cb", BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("symlink ", sticky_link, " -> ", foreign->target,
                                              " (owner uid ", geteuid(),
                                              "), on the path to the policy ", sticky_link,
                                              "/policy.cb, lies in directory ", dir.Join("tmp"),
                                              " (owner uid ", geteuid(), ", mode 01777), "
                                              "which other users may write to"))));
  // Root's link in root's directory (as /var/run -> /run) is followed.
  std::string root_link = dir.Join("by-root");
  ASSERT_EQ(symlink(foreign->target.c_str(), root_link.c_str()), 0);
  EXPECT_OK(LoadPolicyFile(root_link + "/policy.cb", BrokerContext()));
}

TEST_F(PolicyFileTest, ParseErrorsNameThePath) {
  std::string path = Write("broken.cb", "( capabilities = [ ( name = 5 ) ] )");
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(path + ":1:29: ")));
}

TEST_F(PolicyFileTest, MissingFileIsNotFoundAndNamesThePath) {
  std::string path = dir_ + "/absent.cb";
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("open(policy ", path, "): No such file or directory")));
}

// A policy in a directory named in any language: the messages that name
// its path show it as it is; before, "open(policy .../\xe6\x97\xa5\xe6\x9c
// \xac/absent.cb)" and the same in the symlink's advice.
TEST_F(PolicyFileTest, MessagesShowAPathInAnyLanguageAsItIs) {
  const std::string japanese = dir_ + "/\xe6\x97\xa5\xe6\x9c\xac";
  ASSERT_EQ(mkdir(japanese.c_str(), 0755), 0);
  EXPECT_THAT(LoadPolicyFile(japanese + "/absent.cb", BrokerContext()),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("open(policy ", japanese,
                                    "/absent.cb): No such file or directory")));
  Write("\xe6\x97\xa5\xe6\x9c\xac/policy.cb", kPolicy);
  ASSERT_EQ(symlink("policy.cb", (japanese + "/link.cb").c_str()), 0);
  EXPECT_THAT(LoadPolicyFile(japanese + "/link.cb", BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("policy ", japanese, "/link.cb is a symbolic link; name the "
                                    "file itself (readlink -f ", japanese, "/link.cb)")));
}

// What a refusal quotes of the file system (where a symlink of root's
// leads, a name with a newline and an ESC sequence in it) and of the
// policy's strings (an exe whose string says "\n") is escaped where it
// enters the message, so that the broker's stderr line for a refused
// reload, `capctl status` and `capctl policy check` show each error as one
// line and no escape sequence. Before, both went in raw.
TEST_F(PolicyFileTest, RefusalsQuoteWhatIsOnDiskEscaped) {
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(dir_.c_str(), resolved), nullptr) << errno;
  std::string base = resolved;
  ASSERT_EQ(mkdir((base + "/t\x1b[2J\nx").c_str(), 0755), 0);
  Write("t\x1b[2J\nx/f", "x");
  ASSERT_EQ(symlink("t\x1b[2J\nx", (base + "/link").c_str()), 0);
  BrokerContext context;  // as `capctl policy check` resolves
  context.resolve_program = [](const std::string& path) {
    return ResolveProgramPath(path, /*may_block=*/true);
  };
  std::string policy = Write(
      "p.cb", absl::StrCat("( capabilities = [ ( name = \"c\", file = ( path = \"", base,
                           "/link/f\", access = read ) ) ],\n"
                           "  principals = [ ( name = \"ops\", grants = [ \"c\" ],\n"
                           "                   match = ( uid = 1000, exe = \"", base,
                           "/link/f\\n\" ) ) ] )\n"));
  const std::string shown = base + "/t\\x1b[2J\\x0ax/f";
  EXPECT_THAT(LoadPolicyFile(policy, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat(policy, ":1:50: capability 'c': path ", base, "/link/f goes "
                                    "through a symbolic link, which the broker refuses at every "
                                    "request (it resolves to ", shown, "): write that, or set "
                                    "followSymlinks = true\n",
                                    policy, ":3:48: principal 'ops': exe ", base, "/link/f\\x0a "
                                    "goes through a symbolic link, and the kernel reports the "
                                    "executable as ", shown, "\\x0a: write that")));
  // The policy's own path, through a link of root's to nothing.
  ASSERT_EQ(symlink("gone\n\x1b[2J", (base + "/plink").c_str()), 0);
  EXPECT_THAT(LoadPolicyFile(base + "/plink/policy.cb", context),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat(base, "/gone\\x0a\\x1b[2J, on the path to the policy ", base,
                                    "/plink/policy.cb, does not exist")));
}

TEST_F(PolicyFileTest, RefusesGroupOrOtherWritable) {
  std::string group = Write("group.cb", kPolicy, 0664);
  EXPECT_THAT(LoadPolicyFile(group, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("policy ", group, " is writable by other users (mode "
                                    "0664); chmod go-w ", group)));
  std::string other = Write("other.cb", kPolicy, 0666);
  EXPECT_THAT(LoadPolicyFile(other, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("policy ", other, " is writable by other users (mode "
                                    "0666); chmod go-w ", other)));
  EXPECT_THAT(LoadPolicyFile(Write("otheronly.cb", kPolicy, 0602), BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("(mode 0602)")));
}

TEST_F(PolicyFileTest, RefusesFilesOwnedByOthers) {
  std::string path = Write("foreign.cb", kPolicy);
  if (chown(path.c_str(), 4242, 4242) != 0) {
    // Bazel's sandbox runs tests in a user namespace where 4242 is
    // unmapped; CheckPolicyFileStatTest covers the rule there.
    GTEST_SKIP() << "cannot give the file away here: " << errno;
  }
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("policy ", path, " is owned by uid 4242, not by root or "
                                    "the broker (uid ", geteuid(), "); chown root ", path)));
}

struct stat RegularFile(uid_t owner, mode_t mode) {
  struct stat st = {};
  st.st_mode = S_IFREG | mode;
  st.st_uid = owner;
  st.st_size = 100;
  return st;
}

TEST(CheckPolicyFileStatTest, OwnerMustBeRootOrTheBroker) {
  EXPECT_OK(CheckPolicyFileStat("/p", RegularFile(0, 0644), 0));
  EXPECT_OK(CheckPolicyFileStat("/p", RegularFile(0, 0644), 1500));     // root's file
  EXPECT_OK(CheckPolicyFileStat("/p", RegularFile(1500, 0600), 1500));  // the broker's own
  EXPECT_THAT(CheckPolicyFileStat("/p", RegularFile(1000, 0644), 1500),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "policy /p is owned by uid 1000, not by root or the broker "
                       "(uid 1500); chown root /p"));
  EXPECT_THAT(CheckPolicyFileStat("/p", RegularFile(1000, 0644), 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("owned by uid 1000")));
}

TEST(CheckPolicyFileStatTest, ModeAndTypeAndSize) {
  EXPECT_THAT(CheckPolicyFileStat("/p", RegularFile(0, 0620), 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "policy /p is writable by other users (mode 0620); chmod go-w /p"));
  EXPECT_THAT(CheckPolicyFileStat("/p", RegularFile(0, 04646), 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("(mode 04646)")));
  struct stat dir = RegularFile(0, 0755);
  dir.st_mode = S_IFDIR | 0755;
  EXPECT_THAT(CheckPolicyFileStat("/p", dir, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a directory")));
  struct stat big = RegularFile(0, 0644);
  big.st_size = kMaxPolicyBytes + 1;
  EXPECT_THAT(CheckPolicyFileStat("/p", big, 0),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("1048577 bytes")));
}

TEST_F(PolicyFileTest, RefusesSymlinks) {
  std::string target = Write("real.cb", kPolicy);
  std::string link = dir_ + "/link.cb";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_THAT(LoadPolicyFile(link, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("policy ", link, " is a symbolic link; name the file "
                                    "itself (readlink -f ", link, ")")));
  EXPECT_OK(LoadPolicyFile(target, BrokerContext()));
}

TEST_F(PolicyFileTest, RefusesDirectoriesAndSpecialFiles) {
  EXPECT_THAT(LoadPolicyFile(dir_, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("policy ", dir_, " is a directory, not a regular file")));
  EXPECT_THAT(LoadPolicyFile("/dev/null", BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "policy /dev/null is a character device, not a regular file"));
}

// A path ending in "/", "." or ".." names no file: it cannot be opened, as
// a directory named plainly cannot; never kInvalidArgument, which says the
// text is wrong (capctl policy check printed it as a parse error,
// "rejected (1 error)"). The message names the path once and says what is
// wrong with it, not that it is a directory ("policy.cb/" is a file's).
TEST_F(PolicyFileTest, APathEndingInSlashOrDotsIsNoFileNotBadText) {
  const std::string file = Write("policy.cb", kPolicy);
  struct Case {
    std::string path;
    absl::string_view ending;
  };
  for (const Case& c : {Case{dir_ + "/", "/"}, Case{dir_ + "/.", "."}, Case{dir_ + "/..", ".."},
                        Case{file + "/", "/"}}) {
    EXPECT_THAT(LoadPolicyFile(c.path, BrokerContext()),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         absl::StrCat("the policy ", c.path, " ends in '", c.ending,
                                      "', so it names no file: give the path of a file")));
  }
}

// fstat's size is only a hint: /proc files say 0 whatever they hold, and a
// file may grow between fstat and read. The read stops one byte past the
// limit and refuses the file. /proc/self/maps (a regular file of ours, size
// 0, one line per mapping) is made longer than the limit, deterministically,
// by mapping pages of alternating protection.
TEST_F(PolicyFileTest, RefusesAFileThatReadsLongerThanItsSize) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  constexpr size_t kPages = 40000;  // 20,000 mappings of ~50 bytes each
  void* region = mmap(nullptr, kPages * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED) << errno;
  for (size_t i = 0; i < kPages; i += 2) {
    ASSERT_EQ(mprotect(static_cast<char*>(region) + i * page, page, PROT_READ), 0) << errno;
  }
  struct stat st;
  ASSERT_EQ(stat("/proc/self/maps", &st), 0) << errno;
  ASSERT_EQ(st.st_size, 0);
  absl::StatusOr<Policy> policy = LoadPolicyFile("/proc/self/maps", BrokerContext());
  // The test is only worth its name if the file really is that long.
  size_t length = 0;
  {
    absl::StatusOr<UniqueFd> maps = TakeFd(open("/proc/self/maps", O_RDONLY | O_CLOEXEC), "open");
    ASSERT_OK(maps);
    char buffer[65536];
    ssize_t n;
    while ((n = read(maps->get(), buffer, sizeof buffer)) > 0) length += static_cast<size_t>(n);
    ASSERT_EQ(n, 0) << errno;
  }
  ASSERT_EQ(munmap(region, kPages * page), 0) << errno;
  ASSERT_GT(length, kMaxPolicyBytes);
  EXPECT_THAT(policy, StatusIs(absl::StatusCode::kResourceExhausted,
                               "policy /proc/self/maps is larger than the limit of 1048576 "
                               "bytes (1 MiB)"));
}

TEST_F(PolicyFileTest, FifoIsRefusedWithoutBlocking) {
  // Without O_NONBLOCK, open() would wait forever for a writer.
  std::string fifo = dir_ + "/fifo.cb";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(LoadPolicyFile(fifo, BrokerContext()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
}

// The kernel reports a client's executable by its resolved path (on
// Debian 12, /bin is a link to usr/bin: a program in /bin/foo runs as
// /usr/bin/foo), so an exe through a symlink could never match: it is
// refused at its line and column, with the path to write. One that does not
// exist yet (a program installed later) is accepted. `capctl policy check`
// loads the file the same way, so it says the same.
TEST_F(PolicyFileTest, RefusesAnExeThatNamesItsProgramThroughASymlink) {
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(dir_.c_str(), resolved), nullptr) << errno;
  std::string base = resolved;  // the test directory may itself be under a link
  ASSERT_EQ(mkdir((base + "/real").c_str(), 0755), 0);
  Write("real/prog", "#!/bin/sh\n", 0755);
  ASSERT_EQ(symlink("real", (base + "/bin").c_str()), 0);
  ASSERT_EQ(symlink("prog", (base + "/real/alias").c_str()), 0);
  ASSERT_EQ(symlink("gone", (base + "/real/dangling").c_str()), 0);
  auto policy_with_exe = [&](const std::string& exe) {
    return absl::StrCat(
        "( capabilities = [ ( name = \"motd\", file = ( path = \"/etc/motd\", access = read ) ) ],\n"
        "  principals = [ ( name = \"ops\", grants = [ \"motd\" ],\n"
        "                   match = ( uid = 1000, exe = \"", exe, "\" ) ) ] )\n");
  };
  // As `capctl policy check` resolves (the broker's own resolution looks
  // only at the kernel's caches, which a fresh test directory is in, but a
  // lookup of a missing name need not be).
  BrokerContext context;
  context.resolve_program = [](const std::string& exe) {
    return ResolveProgramPath(exe, /*may_block=*/true);
  };
  std::string through_dir = Write("dir.cb", policy_with_exe(base + "/bin/prog"));
  EXPECT_THAT(LoadPolicyFile(through_dir, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat(through_dir, ":3:48: principal 'ops': exe ", base,
                                    "/bin/prog goes through a symbolic link, and the kernel "
                                    "reports the executable as ", base, "/real/prog: write "
                                    "that")));
  std::string through_file = Write("file.cb", policy_with_exe(base + "/real/alias"));
  EXPECT_THAT(LoadPolicyFile(through_file, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("the kernel reports the executable as ", base,
                                              "/real/prog: write that"))));
  // A program not installed yet, under a directory reached through a link:
  // it would run as the link's target.
  std::string not_yet = Write("not-yet.cb", policy_with_exe(base + "/bin/not-yet"));
  EXPECT_THAT(LoadPolicyFile(not_yet, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("the kernel reports the executable as ", base,
                                              "/real/not-yet: write that"))));
  std::string dangling = Write("dangling.cb", policy_with_exe(base + "/real/dangling"));
  EXPECT_THAT(LoadPolicyFile(dangling, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("exe ", base, "/real/dangling is a symbolic link "
                                              "to a file that does not exist"))));
  EXPECT_OK(LoadPolicyFile(Write("real.cb", policy_with_exe(base + "/real/prog")), context));
  EXPECT_OK(LoadPolicyFile(Write("later.cb", policy_with_exe(base + "/real/not-yet")), context));
  // The broker's own resolution, from the caches.
  EXPECT_THAT(LoadPolicyFile(through_dir, BrokerContext()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("symbolic link")));
  EXPECT_OK(LoadPolicyFile(Write("real2.cb", policy_with_exe(base + "/real/prog")),
                           BrokerContext()));
  // An exe that cannot be checked (a file system that would not answer, a
  // directory the broker may not search) is accepted: a rule that never
  // matches denies, and whoever controls such a file system must not be
  // able to make every reload fail.
  BrokerContext cannot_tell;
  cannot_tell.resolve_program = [](const std::string& exe) -> absl::StatusOr<std::string> {
    return absl::UnavailableError("cannot resolve " + exe + ": Resource temporarily unavailable");
  };
  EXPECT_OK(LoadPolicyFile(through_dir, cannot_tell));
  // ParsePolicy alone does no I/O (it has a fuzz target): the text is not
  // checked against this machine's files.
  EXPECT_OK(ParsePolicy(policy_with_exe(base + "/bin/prog"), "policy.cb"));
}

// A capability's path through a symlink passed every check, and then every
// request for it failed with permissionDenied ("the path contains a
// symlink, which is refused"), a denial the policy never made: the broker
// opens policy paths with RESOLVE_NO_SYMLINKS unless followSymlinks = true.
// Such a path is refused when the policy is loaded, with the two ways out.
TEST_F(PolicyFileTest, RefusesACapabilityPathThroughASymlinkUnlessItFollowsSymlinks) {
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(dir_.c_str(), resolved), nullptr) << errno;
  std::string base = resolved;
  ASSERT_EQ(mkdir((base + "/real").c_str(), 0755), 0);
  Write("real/file", "x");
  ASSERT_EQ(symlink("real", (base + "/link").c_str()), 0);
  ASSERT_EQ(symlink("gone", (base + "/real/dangling").c_str()), 0);
  auto policy_with = [&](const std::string& capability) {
    return absl::StrCat("( capabilities = [\n    ( name = \"c\", ", capability,
                        " ) ],\n  principals = [ ( name = \"ops\", grants = [ \"c\" ],\n"
                        "                   match = ( uid = 1000 ) ) ] )\n");
  };
  BrokerContext context;  // as `capctl policy check` resolves
  context.resolve_program = [](const std::string& path) {
    return ResolveProgramPath(path, /*may_block=*/true);
  };
  std::string file = Write("file.cb", policy_with(absl::StrCat("file = ( path = \"", base,
                                                              "/link/file\", access = read )")));
  EXPECT_THAT(LoadPolicyFile(file, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat(file, ":2:35: capability 'c': path ", base,
                                    "/link/file goes through a symbolic link, which the broker "
                                    "refuses at every request (it resolves to ", base,
                                    "/real/file): write that, or set followSymlinks = true")));
  std::string directory = Write(
      "dir.cb",
      policy_with(absl::StrCat("directory = ( path = \"", base, "/link\", access = read )")));
  EXPECT_THAT(LoadPolicyFile(directory, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("capability 'c': path ", base, "/link goes through "
                                              "a symbolic link"))));
  // A file to be created, under a directory reached through the link.
  std::string created = Write(
      "create.cb", policy_with(absl::StrCat("file = ( path = \"", base,
                                            "/link/new\", access = write, create = true )")));
  EXPECT_THAT(LoadPolicyFile(created, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("(it resolves to ", base, "/real/new)"))));
  std::string dangling = Write(
      "dangling.cb", policy_with(absl::StrCat("file = ( path = \"", base, "/real/dangling\", ",
                                              "access = write, create = true )")));
  EXPECT_THAT(LoadPolicyFile(dangling, context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("capability 'c': path ", base, "/real/dangling is a "
                                              "symbolic link to a file that does not exist, "
                                              "which the broker refuses"))));
  // Followed on purpose, or the real path, or not there yet: loaded.
  EXPECT_OK(LoadPolicyFile(
      Write("follow.cb", policy_with(absl::StrCat("file = ( path = \"", base,
                                                  "/link/file\", access = read, "
                                                  "followSymlinks = true )"))),
      context));
  EXPECT_OK(LoadPolicyFile(
      Write("real.cb", policy_with(absl::StrCat("file = ( path = \"", base,
                                                "/real/file\", access = read )"))),
      context));
  EXPECT_OK(LoadPolicyFile(
      Write("later.cb", policy_with(absl::StrCat("directory = ( path = \"", base,
                                                 "/real/later\", access = read )"))),
      context));
  // The broker's own resolution, from the caches; and what cannot be told
  // is accepted, as for an exe.
  EXPECT_THAT(LoadPolicyFile(file, BrokerContext()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("symbolic link")));
  BrokerContext cannot_tell;
  cannot_tell.resolve_program = [](const std::string& path) -> absl::StatusOr<std::string> {
    return absl::UnavailableError("cannot resolve " + path + ": Resource temporarily unavailable");
  };
  EXPECT_OK(LoadPolicyFile(file, cannot_tell));
  EXPECT_OK(ParsePolicy(testing::ReadWholeFile(file), "policy.cb"));
}

// A directory on a capability's or an exe's path that another user owns is
// theirs to change: they may turn a name in it into a symlink at any time
// (`mv share real && ln -s real share`), or move a link of root's there.
// Were such a path refused at load, one user's link would stop every reload
// and restart of the broker, every capability, principal and service with
// it; and the advice to write the resolved path would write their target
// into the policy. So only a symlink nobody but root or the broker could
// have put in place refuses the policy (root's own /bin and /var/run
// still do, as in the tests above): what another user could have put there
// is accepted, by capbrokerd (from the caches) and `capctl policy check`
// alike. A request through it then fails at run time, saying why; an exe
// rule through it matches nothing.
TEST_F(PolicyFileTest, AcceptsASymlinkAnotherUserCouldHavePutOnThePath) {
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(dir_.c_str(), resolved), nullptr) << errno;
  std::string base = resolved;
  std::string alice = base + "/home/alice";
  ASSERT_EQ(mkdir((base + "/home").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(alice.c_str(), 0755), 0);
  if (chown(alice.c_str(), testing::kForeignUid, testing::kForeignUid) != 0) {
    GTEST_SKIP() << "cannot give a directory away here: " << errno;
  }
  ASSERT_EQ(mkdir((alice + "/share").c_str(), 0755), 0);
  Write("home/alice/share/data", "x");
  ASSERT_EQ(mkdir((alice + "/bin").c_str(), 0755), 0);
  Write("home/alice/bin/tool", "#!/bin/sh\n", 0755);
  auto policy_with = [&](const std::string& capability, const std::string& exe) {
    return absl::StrCat("( capabilities = [ ( name = \"c\", ", capability, " ) ],\n",
                        "  principals = [ ( name = \"ops\", grants = [ \"c\" ],\n",
                        "                   match = ( uid = 1000, exe = \"", exe, "\" ) ) ] )\n");
  };
  auto file = [](const std::string& path) {
    return absl::StrCat("file = ( path = \"", path, "\", access = read )");
  };
  // As alice: both directories become symlinks of hers.
  for (const char* name : {"share", "bin"}) {
    std::string link = absl::StrCat(alice, "/", name);
    std::string real = absl::StrCat(link, ".real");
    ASSERT_EQ(rename(link.c_str(), real.c_str()), 0) << link;
    ASSERT_EQ(symlink(absl::StrCat(name, ".real").c_str(), link.c_str()), 0) << link;
    ASSERT_EQ(lchown(link.c_str(), testing::kForeignUid, testing::kForeignUid), 0) << link;
  }
  // Looked up through the links, so that the kernel's caches hold them.
  ASSERT_EQ(access((alice + "/share/data").c_str(), R_OK), 0);
  ASSERT_EQ(access((alice + "/bin/tool").c_str(), R_OK), 0);
  std::string real_exe = alice + "/bin.real/tool";
  std::string data = Write("data.cb", policy_with(file(alice + "/share/data"), real_exe));
  std::string share = Write(
      "share.cb", policy_with(absl::StrCat("directory = ( path = \"", alice + "/share",
                                          "\", access = read )"),
                              real_exe));
  std::string exe = Write("exe.cb", policy_with(file(alice + "/share.real/data"),
                                                alice + "/bin/tool"));
  BrokerContext capctl;  // as `capctl policy check` resolves
  capctl.resolve_program = [](const std::string& path) {
    return ResolveProgramPath(path, /*may_block=*/true);
  };
  BrokerContext broker;  // capbrokerd's own, from the caches
  for (const BrokerContext* context : {&capctl, &broker}) {
    EXPECT_OK(LoadPolicyFile(data, *context).status());
    EXPECT_OK(LoadPolicyFile(share, *context).status());
    EXPECT_OK(LoadPolicyFile(exe, *context).status());
  }
  // A link of root's that alice could have moved into her directory counts
  // no more than her own.
  ASSERT_EQ(symlink("share.real", (alice + "/by-root").c_str()), 0);
  std::string by_root = Write("by-root.cb", policy_with(file(alice + "/by-root/data"), real_exe));
  EXPECT_OK(LoadPolicyFile(by_root, capctl).status());
  EXPECT_OK(LoadPolicyFile(by_root, broker).status());
  // The same link of root's in a directory only root can change refuses
  // the policy, naming the path to write.
  ASSERT_EQ(symlink((alice + "/share.real").c_str(), (base + "/by-root").c_str()), 0);
  std::string trusted = Write("trusted.cb", policy_with(file(base + "/by-root/data"), real_exe));
  EXPECT_THAT(LoadPolicyFile(trusted, capctl),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("(it resolves to ", alice, "/share.real/data)"))));
  // And so does a system link such as /bin (on Debian 12, a link of root's
  // to usr/bin), where there is one.
  struct stat bin;
  if (lstat("/bin", &bin) == 0 && S_ISLNK(bin.st_mode) && bin.st_uid == 0) {
    std::string sh = Write("sh.cb", policy_with(file("/bin/sh"), real_exe));
    EXPECT_THAT(LoadPolicyFile(sh, capctl),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("path /bin/sh goes through a symbolic link")));
  }
}

// followSymlinks = true skipped every check of the path: with file = (path
// = "/home/alice/report", followSymlinks = true), alice's `ln -sf
// /etc/shadow report` handed every grantee root's fd of /etc/shadow. The
// broker now follows only links no user but root or its own could have put
// in place (refused at the request otherwise), and a followed path that
// runs, when the policy is loaded, through a link or a directory another
// user could change is refused whole, naming the capability, the link or
// directory, and the fix. Root's links in root's directories still load.
TEST_F(PolicyFileTest, RefusesAFollowedPathThroughWhatAnotherUserCouldChange) {
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(dir_.c_str(), resolved), nullptr) << errno;
  const std::string base = resolved;
  const std::string alice = base + "/alice";
  ASSERT_EQ(mkdir(alice.c_str(), 0755), 0);
  if (chown(alice.c_str(), testing::kForeignUid, testing::kForeignUid) != 0) {
    GTEST_SKIP() << "cannot give a directory away here: " << errno;
  }
  const std::string secret = Write("secret", "root only", 0600);
  const std::string report = alice + "/report";
  ASSERT_EQ(symlink(secret.c_str(), report.c_str()), 0);
  ASSERT_EQ(lchown(report.c_str(), testing::kForeignUid, testing::kForeignUid), 0);
  Write("alice/plain", "x");
  ASSERT_EQ(symlink("alice", (base + "/to-alice").c_str()), 0);
  auto policy_with = [&](const std::string& capability) {
    return absl::StrCat("( capabilities = [\n    ( name = \"c\", ", capability,
                        " ) ],\n  principals = [ ( name = \"ops\", grants = [ \"c\" ],\n"
                        "                   match = ( uid = 1000 ) ) ] )\n");
  };
  auto followed = [](const std::string& kind, const std::string& path) {
    return absl::StrCat(kind, " = ( path = \"", path, "\", access = read, followSymlinks = true )");
  };
  BrokerContext capctl;  // as `capctl policy check` resolves
  capctl.resolve_program = [](const std::string& path) {
    return ResolveProgramPath(path, /*may_block=*/true);
  };
  capctl.check_followed_path = [](const std::string& path) {
    return CheckFollowedCapabilityPath(path, /*may_block=*/true);
  };
  BrokerContext broker;  // capbrokerd's own, from the caches
  // The reviewer's layout.
  const std::string theirs = Write("theirs.cb", policy_with(followed("file", report)));
  for (const BrokerContext* context : {&capctl, &broker}) {
    EXPECT_THAT(
        LoadPolicyFile(theirs, *context),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr(absl::StrCat(theirs, ":2:35: capability 'c': path ", report,
                                              " has followSymlinks = true, but symlink ", report,
                                              ", on the path to ", report,
                                              ", is owned by uid 65534")),
                       HasSubstr("another user could re-point it"),
                       HasSubstr("name the real path instead (readlink -f)"))));
  }
  // Root's link in alice's directory, or none at all: the directory is
  // hers, and no link there would be followed.
  ASSERT_EQ(lchown(report.c_str(), 0, 0), 0);
  EXPECT_THAT(LoadPolicyFile(theirs, capctl),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("lies in directory ", alice,
                                              " (owner uid 65534, mode 0755)"))));
  const std::string plain =
      Write("plain.cb", policy_with(followed("file", base + "/to-alice/plain")));
  EXPECT_THAT(LoadPolicyFile(plain, capctl),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(absl::StrCat("capability 'c': path ", base,
                                                    "/to-alice/plain has followSymlinks = true, "
                                                    "but directory ", alice, ", on the path to ")),
                             HasSubstr("set followSymlinks = false"))));
  // Root's link to her directory, as a directory capability: loads (nothing
  // beneath a directory grant is followed); so does root's link to a file
  // in root's directory.
  EXPECT_OK(LoadPolicyFile(
      Write("dir.cb", policy_with(followed("directory", base + "/to-alice"))), capctl));
  ASSERT_EQ(symlink("secret", (base + "/to-secret").c_str()), 0);
  EXPECT_OK(LoadPolicyFile(
      Write("ours.cb", policy_with(followed("file", base + "/to-secret"))), capctl));
  // What cannot be told is accepted: the request says why it fails.
  BrokerContext cannot_tell;
  cannot_tell.check_followed_path = [](const std::string& path) {
    return absl::UnavailableError("cannot resolve " + path + ": Resource temporarily unavailable");
  };
  EXPECT_OK(LoadPolicyFile(theirs, cannot_tell));
}

// Resolving the longest existing part: "/" itself, and a path of which
// nothing below the root exists.
TEST(ResolveProgramPathTest, ResolvesWhatExistsAndKeepsTheRest) {
  absl::StatusOr<std::string> missing = ResolveProgramPath("/no-such-dir-here/prog", true);
  ASSERT_OK(missing.status());
  EXPECT_EQ(*missing, "/no-such-dir-here/prog");
  absl::StatusOr<std::string> root = ResolveProgramPath("/", true);
  ASSERT_OK(root.status());
  EXPECT_EQ(*root, "/");
}

TEST_F(PolicyFileTest, RefusesFilesOverTheSizeLimitBeforeReading) {
  std::string path = Write("huge.cb", "");
  ASSERT_EQ(truncate(path.c_str(), 10 << 20), 0);  // 10 MiB, sparse
  EXPECT_THAT(LoadPolicyFile(path, BrokerContext()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("policy ", path, " is 10485760 bytes; the limit is "
                                    "1048576 bytes (1 MiB)")));
  // Exactly at the limit is read (and parsed: all spaces after a policy).
  std::string at_limit(kPolicy);
  at_limit.resize(kMaxPolicyBytes, ' ');
  EXPECT_OK(LoadPolicyFile(Write("limit.cb", at_limit), BrokerContext()));
}

}  // namespace
}  // namespace capbroker

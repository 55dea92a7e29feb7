#include "broker/util/trusted_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/foreign_link.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::util {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;

PathRules Rules(std::optional<mode_t> create_mode = std::nullopt) {
  return PathRules{geteuid(), "the thing", create_mode};
}

// A directory `name` in `dir` with exactly `mode`.
std::string MakeDir(const TempDir& dir, const std::string& name, mode_t mode = 0755) {
  std::string path = dir.Join(name);
  EXPECT_EQ(mkdir(path.c_str(), 0700), 0) << path;
  EXPECT_EQ(chmod(path.c_str(), mode), 0) << path;
  return path;
}

std::string MakeLink(const TempDir& dir, const std::string& name, const std::string& target) {
  std::string path = dir.Join(name);
  EXPECT_EQ(symlink(target.c_str(), path.c_str()), 0) << path;
  return path;
}

// Gives the symlink `link` to another user; false where no other uid is
// mapped (Bazel's sandbox) or we are not root.
bool GiveAway(const std::string& link) {
  return lchown(link.c_str(), testing::kForeignUid, testing::kForeignUid) == 0;
}

TEST(OpenParentTest, WalksAPlainPath) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  ASSERT_OK_AND_ASSIGN(ResolvedParent parent, OpenParent(real + "/file", Rules()));
  EXPECT_EQ(parent.dir_path, real);
  EXPECT_EQ(parent.name, "file");
  EXPECT_TRUE(S_ISDIR(parent.dir_stat.st_mode));
  EXPECT_TRUE(testing::IsCloseOnExec(parent.dir.get()));
  struct stat st;
  ASSERT_EQ(stat(real.c_str(), &st), 0);
  EXPECT_EQ(parent.dir_stat.st_ino, st.st_ino);
}

TEST(OpenParentTest, FollowsLinksOwnedByRootOrTheBroker) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  MakeDir(dir, "sub");
  MakeLink(dir, "absolute", real);
  MakeLink(dir, "sub/relative", "../real");
  MakeLink(dir, "chain", "sub/relative");
  for (const char* via : {"absolute", "sub/relative", "chain", "sub/../chain"}) {
    ASSERT_OK_AND_ASSIGN(ResolvedParent parent,
                         OpenParent(absl::StrCat(dir.path(), "/", via, "/f"), Rules()));
    EXPECT_EQ(parent.dir_path, real) << via;
  }
}

// The system's own root-owned links must keep working.
TEST(OpenParentTest, FollowsTheSystemsVarRunLink) {
  struct stat st;
  if (lstat("/var/run", &st) != 0 || !S_ISLNK(st.st_mode)) {
    GTEST_SKIP() << "/var/run is not a symlink here";
  }
  ASSERT_OK_AND_ASSIGN(ResolvedParent parent, OpenParent("/var/run/x.sock", Rules()));
  EXPECT_EQ(parent.dir_path, "/run");
}

// The reported attack: in a sticky, world-writable directory (/tmp), a
// user links a name to a directory the broker accepts, then swaps the link.
TEST(OpenParentTest, RefusesALinkOwnedByAnotherUser) {
  TempDir dir;
  std::optional<testing::ForeignLink> foreign = testing::MakeForeignLink(dir);
  if (!foreign.has_value()) GTEST_SKIP() << "cannot give a link away here: " << errno;
  EXPECT_THAT(OpenParent(foreign->link + "/broker.sock", Rules()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("symlink ", foreign->link, " -> ",
                                                    foreign->target,
                                                    ", on the path to the thing, is owned "
                                                    "by uid 65534")),
                             HasSubstr("another user could re-point it at any time"))));
}

TEST(OpenParentTest, ChecksLinksInsideLinkTargets) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  MakeDir(dir, "d");
  std::string inner = MakeLink(dir, "d/inner", real);
  MakeLink(dir, "outer", dir.Join("d/inner"));        // the whole target a link
  MakeLink(dir, "through", dir.Join("d/inner/..")); // a link in the middle of one
  if (!GiveAway(inner)) GTEST_SKIP() << "cannot give the link away here: " << errno;
  for (const char* via : {"outer", "through"}) {
    EXPECT_THAT(OpenParent(absl::StrCat(dir.path(), "/", via, "/f"), Rules()),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(absl::StrCat("symlink ", inner, " -> ", real))))
        << via;
  }
}

// A link is as safe as the directory it is in: root's link in a directory
// others can write (not sticky) can be replaced by them.
TEST(OpenParentTest, ChecksTheDirectoryHoldingALink) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  std::string open = MakeDir(dir, "open", 0777);
  MakeLink(dir, "open/link", real);
  EXPECT_THAT(OpenParent(open + "/link/f", Rules()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("directory ", open,
                                              ", on the path to the thing, is writable by "
                                              "other users (mode 0777"))));
}

// Root's link in a sticky directory others may write to (/tmp) is no safer:
// another user could have renamed it in from a directory of theirs, as
// ResolveTrustedLinks already held. Before, OpenParent followed it.
TEST(OpenParentTest, RefusesALinkInADirectoryOthersMayWriteStickyOrNot) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  std::string sticky = MakeDir(dir, "sticky", 01777);
  MakeLink(dir, "sticky/link", real);
  EXPECT_THAT(OpenParent(sticky + "/link/f", Rules()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("symlink ", sticky, "/link -> ", real,
                                                    " (owner uid ", geteuid(),
                                                    "), on the path to the thing, lies in "
                                                    "directory ", sticky)),
                             HasSubstr("which other users may write to"))));
  ASSERT_EQ(chmod(sticky.c_str(), 01770), 0);
  EXPECT_THAT(OpenParent(sticky + "/link/f", Rules()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("(owner uid")));
  // A directory of root's there still counts, as before.
  std::string inside = MakeDir(dir, "sticky/inside");
  ASSERT_OK_AND_ASSIGN(ResolvedParent parent, OpenParent(inside + "/f", Rules()));
  EXPECT_EQ(parent.dir_path, inside);
}

TEST(OpenParentTest, StopsAfterTheKernelsNumberOfLinks) {
  TempDir dir;
  std::string loop = MakeLink(dir, "loop", dir.Join("loop"));
  EXPECT_THAT(OpenParent(loop + "/f", Rules()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("more than 40 symlinks on the path to the thing")));
  // A chain of exactly 40 resolves, as it does for the kernel.
  std::string real = MakeDir(dir, "real");
  std::string next = real;
  for (int i = 0; i < kMaxSymlinks; ++i) next = MakeLink(dir, absl::StrCat("l", i), next);
  ASSERT_OK_AND_ASSIGN(ResolvedParent parent, OpenParent(next + "/f", Rules()));
  EXPECT_EQ(parent.dir_path, real);
}

TEST(OpenParentTest, RelativePathsAreWalkedFromTheRoot) {
  TempDir dir;
  std::string shared = MakeDir(dir, "shared", 0777);
  std::string inside = MakeDir(dir, "shared/inside");
  int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(cwd, 0);
  ASSERT_EQ(chdir(inside.c_str()), 0);
  absl::StatusOr<ResolvedParent> parent = OpenParent("f", Rules());
  ASSERT_EQ(fchdir(cwd), 0);
  close(cwd);
  // The working directory's own parent is checked, not just "." itself.
  EXPECT_THAT(parent, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("directory " + shared + ", on the path")));
}

TEST(OpenParentTest, CreatesOnlyTheLastDirectoryWithItsExactMode) {
  TempDir dir;
  mode_t old_umask = umask(0077);
  absl::StatusOr<ResolvedParent> created = OpenParent(dir.Join("new/s"), Rules(0755));
  umask(old_umask);
  ASSERT_OK(created.status());
  EXPECT_EQ(created->dir_path, dir.Join("new"));
  EXPECT_EQ(created->dir_stat.st_mode & 07777, 0755u);
  EXPECT_TRUE(testing::IsCloseOnExec(created->dir.get()));
  EXPECT_THAT(OpenParent(dir.Join("a/b/s"), Rules(0755)),
              StatusIs(absl::StatusCode::kNotFound,
                       dir.Join("a") + ", on the path to the thing, does not exist"));
  // Never through a link that points nowhere (nor does mkdir follow one).
  std::string dangling = MakeLink(dir, "dangling", dir.Join("nowhere"));
  EXPECT_THAT(OpenParent(dangling + "/s", Rules(0755)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir.Join("nowhere"))));
  EXPECT_NE(access(dir.Join("nowhere").c_str(), F_OK), 0);
  // Without create_mode, a missing last directory is not found either.
  EXPECT_THAT(OpenParent(dir.Join("other/s"), Rules()),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(OpenParentTest, ClearErrorsForPathsThatNameNoFile) {
  TempDir dir;
  std::string file = dir.WriteFile("file", "");
  EXPECT_THAT(OpenParent(file + "/s", Rules()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       file + ", on the path to the thing, is not a directory"));
  // What is wrong is said once, about the subject (which names the path),
  // whatever the path names: "file/" too.
  struct Case {
    std::string path;
    std::string ending;
  };
  for (const Case& c : {Case{dir.path() + "/", "/"}, Case{dir.path() + "/.", "."},
                        Case{dir.path() + "/..", ".."}, Case{file + "/", "/"}}) {
    EXPECT_THAT(OpenParent(c.path, Rules()),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         absl::StrCat("the thing ends in '", c.ending,
                                      "', so it names no file: give the path of a file")))
        << c.path;
  }
  EXPECT_THAT(OpenParent("", Rules()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "the thing: the path is empty; give the path of a file"));
}

TEST(CheckTraversedDirectoryStatTest, OwnerAndMode) {
  PathRules broker{1500, "the policy /p", std::nullopt};
  PathRules root{0, "the policy /p", std::nullopt};
  struct stat st {};
  st.st_mode = S_IFDIR | 0755;
  st.st_uid = 0;
  EXPECT_OK(CheckTraversedDirectoryStat("/etc", st, root));
  EXPECT_OK(CheckTraversedDirectoryStat("/etc", st, broker));  // root's is fine
  st.st_uid = 1500;
  EXPECT_OK(CheckTraversedDirectoryStat("/home/broker", st, broker));  // the broker's own
  EXPECT_THAT(CheckTraversedDirectoryStat("/home/alice", st, root),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("directory /home/alice, on the path to the policy /p, is "
                                 "owned by uid 1500 (mode 0755)")));
  st.st_uid = 0;
  st.st_mode = S_IFDIR | 0775;
  EXPECT_THAT(CheckTraversedDirectoryStat("/srv", st, root),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("writable by other users (mode 0775"),
                             HasSubstr("chmod go-w /srv"))));
  st.st_mode = S_IFDIR | 0757;
  EXPECT_THAT(CheckTraversedDirectoryStat("/srv", st, root),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("mode 0757")));
  // Sticky, as /tmp: others cannot rename what is ours.
  st.st_mode = S_IFDIR | 01777;
  EXPECT_OK(CheckTraversedDirectoryStat("/tmp", st, root));
}

TEST(CheckSymlinkStatTest, OwnerMustBeRootOrTheBroker) {
  PathRules broker{1500, "the socket /s/b.sock", std::nullopt};
  struct stat st {};
  st.st_mode = S_IFLNK | 0777;  // a link's own mode means nothing on Linux
  st.st_uid = 0;
  EXPECT_OK(CheckSymlinkStat("/var/run", "/run", st, broker));
  st.st_uid = 1500;
  EXPECT_OK(CheckSymlinkStat("/s", "/srv/b", st, broker));
  st.st_uid = 1000;
  EXPECT_THAT(CheckSymlinkStat("/s", "/srv/b", st, broker),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("symlink /s -> /srv/b, on the path to the socket /s/b.sock, "
                                 "is owned by uid 1000, not by root or the broker (uid 1500)")));
  // A link not read yet is named alone.
  EXPECT_THAT(CheckSymlinkStat("/s", "", st, broker),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("symlink /s, on the path to the socket /s/b.sock, is owned")));
}

// What a message quotes of a path, of a symlink's target or of the subject
// (a configured path) is escaped where it enters the message: a newline
// would split the broker's stderr line, an ESC would reach the terminal of
// whoever reads it (capctl status, capctl policy check). Text in any
// language stays as it is. Before, all of it went in raw.
TEST(TrustedPathMessagesTest, QuoteNamesEscaped) {
  TempDir dir;
  // A link of root's (it passes) whose target holds a newline and an ESC
  // sequence and does not exist.
  MakeLink(dir, "\xe6\x97\xa5", "no\nsuch\x1b[2J");
  absl::Status missing = OpenParent(dir.Join("\xe6\x97\xa5/file"), Rules()).status();
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound,
                                absl::StrCat(dir.path(), "/no\\x0asuch\\x1b[2J, on the path to "
                                             "the thing, does not exist")));
  // The subject, and a file under a name in the configured path.
  PathRules rules{geteuid(), "the policy /p\n\x1b[2J\xce\xa9", std::nullopt};
  std::string file = dir.WriteFile("file", "");
  EXPECT_THAT(OpenParent(file + "\x1b/s", rules),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat(file, "\\x1b, on the path to the policy "
                                          "/p\\x0a\\x1b[2J\xce\xa9, does not exist")));
  // A link another user owns: its target as read.
  struct stat st {};
  st.st_mode = S_IFLNK | 0777;
  st.st_uid = 1000;
  EXPECT_THAT(CheckSymlinkStat("/s\n", "/srv/\x1b[2Jb", st, rules),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("symlink /s\\x0a -> /srv/\\x1b[2Jb, on the path to the "
                                 "policy /p\\x0a\\x1b[2J\xce\xa9, is owned by uid 1000")));
  // The directories and files the rules judge.
  st.st_mode = S_IFDIR | 0777;
  st.st_uid = 0;
  EXPECT_THAT(CheckTraversedDirectoryStat("/srv\n", st, rules),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("directory /srv\\x0a, on the path to the policy "
                                       "/p\\x0a\\x1b[2J\xce\xa9, is writable"),
                             HasSubstr("chmod go-w /srv\\x0a"))));
  st.st_mode = S_IFREG | 0666;
  EXPECT_THAT(CheckTrustedFileStat("policy", "/p\x1b", st, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "policy /p\\x1b is writable by other users (mode 0666); chmod go-w "
                       "/p\\x1b"));
  // ResolveTrustedLinks: a capability's path from the policy, which holds
  // what the policy's string escapes said.
  std::string dangling = MakeLink(dir, "dangling\x1b", "gone");
  EXPECT_THAT(ResolveTrustedLinks(dangling, geteuid(), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat(dir.path(), "/dangling\\x1b is a symbolic link to a file "
                                    "that does not exist")));
}

// ResolveTrustedLinks's path, or its error as text.
std::string Resolved(const std::string& path, bool may_block) {
  absl::StatusOr<std::string> resolved = ResolveTrustedLinks(path, geteuid(), may_block);
  return resolved.ok() ? *resolved : resolved.status().ToString();
}

// ResolveTrustedLinks: where a capability's or an exe's path leads, every
// symlink that root or the broker alone could have put there resolved, with
// or without blocking (capctl, capbrokerd), a missing rest as written.
TEST(ResolveTrustedLinksTest, ResolvesTheLinksOfRootOrTheBroker) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  dir.WriteFile("real/file", "x");
  std::string link = MakeLink(dir, "link", "real");
  for (bool may_block : {true, false}) {
    SCOPED_TRACE(may_block);
    EXPECT_EQ(Resolved(link + "/file", may_block), real + "/file");
    EXPECT_EQ(Resolved(real + "/file", may_block), real + "/file");
    EXPECT_EQ(Resolved(link, may_block), real);
  }
  // Not there (yet): resolved as far as it exists. Past a file, as written.
  EXPECT_EQ(Resolved(link + "/new/prog", true), real + "/new/prog");
  EXPECT_EQ(Resolved(link + "/file/x", true), real + "/file/x");
  EXPECT_EQ(Resolved("/", true), "/");
  // A link to nothing, at the end; in the middle, the rest as written.
  std::string dangling = MakeLink(dir, "dangling", "real/gone");
  EXPECT_THAT(ResolveTrustedLinks(dangling, geteuid(), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       dangling + " is a symbolic link to a file that does not exist"));
  EXPECT_EQ(Resolved(dangling + "/x", true), real + "/gone/x");
  // A loop.
  MakeLink(dir, "a", "b");
  MakeLink(dir, "b", "a");
  EXPECT_THAT(ResolveTrustedLinks(dir.Join("a/x"), geteuid(), true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("more than 40 symlinks")));
}

// A symlink that another user could have put on the path, or could
// re-point, tells nothing: kUnavailable, never a resolved path.
TEST(ResolveTrustedLinksTest, CannotTellThroughALinkAnotherUserControls) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  dir.WriteFile("real/file", "x");
  std::string theirs = MakeLink(dir, "theirs", "real");
  if (!GiveAway(theirs)) GTEST_SKIP() << "cannot give a link away here";
  for (bool may_block : {true, false}) {
    EXPECT_THAT(ResolveTrustedLinks(theirs + "/file", geteuid(), may_block),
                StatusIs(absl::StatusCode::kUnavailable,
                         AllOf(HasSubstr(absl::StrCat("symlink ", theirs, ", on the path to ",
                                                      theirs, "/file, is owned by uid 65534")),
                               HasSubstr("what it names now tells nothing"))));
  }
  // Inside the target of a link of root's.
  std::string ours = MakeLink(dir, "ours", "theirs");
  EXPECT_THAT(ResolveTrustedLinks(ours + "/file", geteuid(), true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("is owned by uid 65534")));
  // Root's link in a directory another user owns, or may write: they could
  // have moved it there.
  std::string home = MakeDir(dir, "home");
  ASSERT_EQ(chown(home.c_str(), testing::kForeignUid, testing::kForeignUid), 0);
  MakeLink(dir, "home/moved", "../real");
  EXPECT_THAT(ResolveTrustedLinks(home + "/moved/file", geteuid(), true),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("symlink ", home, "/moved (owner uid 0), on the "
                                              "path to ", home, "/moved/file, lies in directory ",
                                              home, " (owner uid 65534, mode 0755)"))));
  std::string open = MakeDir(dir, "open", 0777);
  MakeLink(dir, "open/l", "../real");
  EXPECT_THAT(ResolveTrustedLinks(open + "/l/file", geteuid(), true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("lies in directory")));
  MakeDir(dir, "home/sub");
  MakeLink(dir, "home/sub/l", "../../real");
  EXPECT_THAT(ResolveTrustedLinks(home + "/sub/l/file", geteuid(), true),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("lies beyond directory ", home))));
  // Sticky, as /tmp, too: others cannot rename what is root's there, but
  // they may add a name, and a link of root's can be renamed in from a
  // directory they may write (or hard-linked, fs.protected_hardlinks = 0).
  ASSERT_EQ(chmod(open.c_str(), 01777), 0);
  EXPECT_THAT(ResolveTrustedLinks(open + "/l/file", geteuid(), true),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("lies in directory ", open,
                                              " (owner uid 0, mode 01777), which other users "
                                              "may write to"))));
  // Past such a directory, a path without links resolves to itself; and
  // root's link before it still counts.
  std::string mine = MakeDir(dir, "home/mine");
  EXPECT_EQ(Resolved(mine, true), mine);
  std::string to_home = MakeLink(dir, "to-home", "home");
  EXPECT_EQ(Resolved(to_home + "/mine", true), mine);
}

// A capability path with followSymlinks (CheckFollowedPath): through a link
// the broker would refuse at every request, or through a directory another
// user could change (where it would refuse any link), it is the policy's
// error, saying which and what to do; root's links in root's directories,
// a path not there yet, or one that ends in a link to nothing pass.
TEST(CheckFollowedPathTest, RefusesWhatAnotherUserCouldChange) {
  TempDir dir;
  std::string real = MakeDir(dir, "real");
  dir.WriteFile("real/file", "x");
  std::string link = MakeLink(dir, "link", "real");
  for (bool may_block : {true, false}) {
    EXPECT_OK(CheckFollowedPath(link + "/file", geteuid(), may_block));
  }
  EXPECT_OK(CheckFollowedPath(link + "/new/file", geteuid(), true));
  EXPECT_OK(CheckFollowedPath(MakeLink(dir, "dangling", "gone"), geteuid(), true));
  // Root's link in a sticky directory others may write (as /tmp).
  std::string open = MakeDir(dir, "open", 01777);
  MakeLink(dir, "open/l", "../real");
  EXPECT_THAT(CheckFollowedPath(open + "/l/file", geteuid(), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("symlink ", open, "/l (owner uid ", geteuid(),
                                                    "), on the path to ", open,
                                                    "/l/file, lies in directory ", open,
                                                    " (owner uid ", geteuid(), ", mode 01777)")),
                             HasSubstr("name the real path instead (readlink -f)"))));
  // A file there, no link: passes (a link put there later is refused at the
  // request).
  EXPECT_OK(CheckFollowedPath(dir.WriteFile("open/file", "x"), geteuid(), true));
  std::string theirs = MakeLink(dir, "theirs", "real");
  std::string home = MakeDir(dir, "home");
  if (!GiveAway(theirs) ||
      chown(home.c_str(), testing::kForeignUid, testing::kForeignUid) != 0) {
    GTEST_SKIP() << "cannot give a link or directory away here";
  }
  EXPECT_THAT(CheckFollowedPath(theirs + "/file", geteuid(), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("symlink ", theirs, ", on the path to ", theirs,
                                              "/file, is owned by uid 65534"))));
  // Their directory, even with no link in it now: they may put one there.
  std::string file = dir.WriteFile("home/report", "x");
  EXPECT_THAT(CheckFollowedPath(file, geteuid(), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("directory ", home, ", on the path to ", file,
                                              ", is owned by uid 65534"))));
  // Their directory as the path's end (a directory capability) passes: no
  // name is looked up in it.
  EXPECT_OK(CheckFollowedPath(home, geteuid(), true));
}

}  // namespace
}  // namespace capbroker::util

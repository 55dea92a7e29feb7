#include "broker/caps/open_path.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "broker/caps/path_walk.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::caps {
namespace {

using ::capbroker::testing::IsCloseOnExec;
using ::capbroker::testing::ReadWholeFile;
using ::capbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

FileOpen Access(schema::Access access) {
  FileOpen how;
  how.access = access;
  return how;
}

int AccMode(int fd) { return fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK); }

TEST(OpenFileTest, OpensWithTheRequestedAccess) {
  TempDir dir;
  std::string path = dir.WriteFile("f", "hello");
  ASSERT_OK_AND_ASSIGN(UniqueFd r, OpenFile(path, Access(schema::Access::READ), false));
  EXPECT_EQ(AccMode(r.get()), O_RDONLY);  // O_NONBLOCK was cleared
  EXPECT_TRUE(IsCloseOnExec(r.get()));
  ASSERT_OK_AND_ASSIGN(UniqueFd w, OpenFile(path, Access(schema::Access::WRITE), false));
  EXPECT_EQ(AccMode(w.get()), O_WRONLY);
  ASSERT_OK_AND_ASSIGN(UniqueFd rw, OpenFile(path, Access(schema::Access::READ_WRITE), false));
  EXPECT_EQ(AccMode(rw.get()), O_RDWR);
  ASSERT_OK_AND_ASSIGN(UniqueFd a, OpenFile(path, Access(schema::Access::APPEND), false));
  EXPECT_EQ(AccMode(a.get()), O_WRONLY | O_APPEND);
}

TEST(OpenFileTest, CreatesWithModeAndTruncates) {
  TempDir dir;
  FileOpen how = Access(schema::Access::WRITE);
  how.create = true;
  how.mode = 0640;
  std::string path = dir.Join("new");
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenFile(path, how, false));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u & ~umask(022));
  dir.WriteFile("full", "content");
  how.create = false;
  how.truncate = true;
  // Only OpenEffects::Complete empties it (once the grant is on record).
  EXPECT_THAT(OpenFile(dir.Join("full"), how, false), StatusIs(absl::StatusCode::kInternal));
  OpenEffects effects;
  ASSERT_OK_AND_ASSIGN(UniqueFd t, OpenFile(dir.Join("full"), how, false,
                                            HardLinks::kUnprotected, &effects));
  ASSERT_EQ(stat(dir.Join("full").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 7);
  EXPECT_TRUE(effects.pending());
  EXPECT_FALSE(effects.created());
  ASSERT_OK(effects.Complete(t.get()));
  ASSERT_EQ(stat(dir.Join("full").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_FALSE(effects.pending());
}

// As reported: OpenEffects::Of took a made file's identity with an fstat of
// its own, after the walk made it; had that failed, the file stayed, with
// nothing to remove it. The walk takes it as it makes the file, beneath a
// directory it borrows (whose fd it duplicates before the create) and one
// it opened alike, so that nothing after the create can fail.
TEST(OpenFileTest, AWalkThatMakesAFileHoldsWhatRemovesItAgain) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("sub").c_str(), 0700), 0);
  UniqueFd start(open(dir.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(start.valid());
  for (const char* path : {"new", "sub/new"}) {
    SCOPED_TRACE(path);
    Lookup lookup{start.get(), path, /*beneath=*/true, /*follow_symlinks=*/false, "open"};
    ASSERT_OK_AND_ASSIGN(Found found, Walk(lookup, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(found.created);
    struct stat st;
    ASSERT_EQ(fstat(found.fd.get(), &st), 0);
    EXPECT_EQ(found.st.st_dev, st.st_dev);
    EXPECT_EQ(found.st.st_ino, st.st_ino);
    EXPECT_TRUE(S_ISREG(found.st.st_mode));
    ASSERT_TRUE(found.directory.valid());
    EXPECT_NE(found.directory.get(), start.get());
    struct stat named;
    ASSERT_EQ(fstatat(found.directory.get(), found.name.c_str(), &named, AT_SYMLINK_NOFOLLOW), 0);
    EXPECT_EQ(named.st_ino, st.st_ino);
  }
}

// A file the open made is removed again by Undo (its grant never got on
// record), by the directory it was made in; one that was there stays.
TEST(OpenFileTest, UndoRemovesOnlyAFileTheOpenMade) {
  TempDir dir;
  FileOpen how = Access(schema::Access::WRITE);
  how.create = true;
  OpenEffects made;
  ASSERT_OK(OpenFile(dir.Join("new"), how, false, HardLinks::kUnprotected, &made).status());
  EXPECT_TRUE(made.created());
  const std::string kept = dir.WriteFile("kept", "x");
  OpenEffects found;
  ASSERT_OK(OpenFile(kept, how, false, HardLinks::kUnprotected, &found).status());
  EXPECT_FALSE(found.pending());
  // The directory renamed meanwhile: the file still goes, by the directory
  // it was made in, not by its old path.
  ASSERT_EQ(rename(dir.path().c_str(), (dir.path() + ".moved").c_str()), 0);
  EXPECT_OK(made.Undo());
  EXPECT_OK(found.Undo());
  ASSERT_EQ(rename((dir.path() + ".moved").c_str(), dir.path().c_str()), 0);
  struct stat st;
  EXPECT_NE(stat(dir.Join("new").c_str(), &st), 0) << "the file made is still there";
  EXPECT_EQ(stat(kept.c_str(), &st), 0);
  // Replaced by another file of the same name: that one is not the broker's.
  OpenEffects replaced;
  ASSERT_OK_AND_ASSIGN(UniqueFd held, OpenFile(dir.Join("again"), how, false,
                                               HardLinks::kUnprotected, &replaced));
  ASSERT_EQ(unlink(dir.Join("again").c_str()), 0);
  dir.WriteFile("again", "someone else's");
  EXPECT_THAT(replaced.Undo(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("names another file by now")));
  EXPECT_EQ(ReadWholeFile(dir.Join("again")), "someone else's");
}

int Attributes(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  int attributes = 0;
  if (!fd || ioctl(fd.get(), FS_IOC_GETFLAGS, &attributes) != 0) return -1;
  return attributes;
}

// O_APPEND alone does not bind its holder: it can turn the flag off or
// truncate the file. An append-only grant holds only for a file the kernel
// keeps append-only, so a file without the attribute is refused.
TEST(OpenFileTest, AnAppendOnlyGrantRefusesAFileThatIsNotAppendOnly) {
  TempDir dir;
  std::string path = dir.WriteFile("log", "old lines\n");
  FileOpen how = Access(schema::Access::APPEND);
  how.append_only = true;
  how.create = true;  // the file exists: it is not this open's to change
  EXPECT_THAT(OpenFile(path, how, false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("chattr +a " + path)));
  EXPECT_EQ(Attributes(path) & FS_APPEND_FL, 0);
  EXPECT_EQ(ReadWholeFile(path), "old lines\n");
  // Asked for append under a wider grant, the fd is O_APPEND, as asked.
  how.append_only = false;
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenFile(path, how, false));
  EXPECT_EQ(AccMode(fd.get()), O_WRONLY | O_APPEND);
}

// A file an append-only grant creates is made append-only: its holder can
// neither truncate it nor turn O_APPEND off. Setting the attribute takes
// CAP_LINUX_IMMUTABLE.
TEST(OpenFileTest, AnAppendOnlyGrantMakesTheFileItCreatesAppendOnly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_LINUX_IMMUTABLE)";
  TempDir dir;
  std::string path = dir.Join("log");
  FileOpen how = Access(schema::Access::APPEND);
  how.append_only = true;
  how.create = true;
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenFile(path, how, false));
  EXPECT_NE(Attributes(path) & FS_APPEND_FL, 0);
  ASSERT_EQ(write(fd.get(), "one\n", 4), 4);
  EXPECT_EQ(ftruncate(fd.get(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(fcntl(fd.get(), F_SETFL, 0), -1) << "O_APPEND was turned off";
  EXPECT_EQ(errno, EPERM);
  // The next grant finds the attribute and opens the file as it is.
  ASSERT_OK_AND_ASSIGN(UniqueFd again, OpenFile(path, how, false));
  ASSERT_EQ(write(again.get(), "two\n", 4), 4);
  EXPECT_EQ(ReadWholeFile(path), "one\ntwo\n");
  // Made append-only, and its grant never on record: Undo still removes
  // it (unlink refuses an append-only file until the attribute is cleared).
  OpenEffects made;
  ASSERT_OK_AND_ASSIGN(UniqueFd unrecorded, OpenFile(dir.Join("unrecorded"), how, false,
                                                     HardLinks::kUnprotected, &made));
  EXPECT_NE(Attributes(dir.Join("unrecorded")) & FS_APPEND_FL, 0);
  EXPECT_OK(made.Undo());
  struct stat st;
  EXPECT_NE(stat(dir.Join("unrecorded").c_str(), &st), 0) << "the file made is still there";
}

// Two rounds of append-only grants that create their file, one by
// OpenFile at `path`, one by OpenBeneath at `beneath` in `directory`
// (borrowed; `beneath_path` names it for lstat): a line per answer (its
// code and message), then one per file left behind.
std::string CreateAppendOnlyTwice(const std::string& path, int directory,
                                  const std::string& beneath, const std::string& beneath_path) {
  FileOpen how = Access(schema::Access::APPEND);
  how.append_only = true;
  how.create = true;
  std::string out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (const absl::Status& status : {OpenFile(path, how, false).status(),
                                       OpenBeneath(directory, beneath, how).status()}) {
      absl::StrAppend(&out, static_cast<int>(status.code()), " ", status.message(), "\n");
    }
  }
  struct stat st;
  for (const std::string& left : {path, beneath_path}) {
    if (lstat(left.c_str(), &st) == 0) absl::StrAppend(&out, "left behind: ", left, "\n");
  }
  return out;
}

// Expects `child` to have run CreateAppendOnlyTwice and to have been
// refused four times (kFailedPrecondition), nothing left behind: each
// message starts with `before`, the path asked for (`path`, then
// `beneath`), and `after`.
void ExpectRefusedAndRemoved(const testing::ChildResult& child, const std::string& path,
                             const std::string& beneath, const std::string& before,
                             const std::string& after) {
  ASSERT_TRUE(WIFEXITED(child.wait_status) && WEXITSTATUS(child.wait_status) == 0);
  std::vector<std::string> lines = absl::StrSplit(child.output, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << child.output;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_THAT(lines[i],
                StartsWith(absl::StrCat(static_cast<int>(absl::StatusCode::kFailedPrecondition),
                                        " ", before, i % 2 == 0 ? path : beneath, after)));
  }
}

// A broker without CAP_LINUX_IMMUTABLE (not run as root) cannot make the
// file it creates for an append-only grant append-only. It refuses the
// grant and removes the file again: left behind, empty and not
// append-only, it would turn the next request's error into "chattr +a",
// which that broker's user cannot run. Each attempt says the same. Run in a
// child whose uids are all nobody's, as such a broker.
TEST(OpenFileTest, AFileThatCannotBeMadeAppendOnlyIsRemovedAgain) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0711), 0);
  ASSERT_EQ(mkdir(dir.Join("logs").c_str(), 0700), 0);
  ASSERT_EQ(chown(dir.Join("logs").c_str(), 65534, 65534), 0);
  ASSERT_EQ(mkdir(dir.Join("logs/sub").c_str(), 0700), 0);
  ASSERT_EQ(chown(dir.Join("logs/sub").c_str(), 65534, 65534), 0);
  const std::string path = dir.Join("logs/new.log");
  UniqueFd logs(open(dir.Join("logs").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(logs.valid());
  testing::ChildResult child = testing::RunInChild([&]() -> std::string {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
      return "setresuid failed";
    }
    return CreateAppendOnlyTwice(path, logs.get(), "sub/beneath.log",
                                 dir.Join("logs/sub/beneath.log"));
  });
  ExpectRefusedAndRemoved(child, path, "sub/beneath.log", "cannot make the new file ",
                          " append-only (Operation not permitted; that takes "
                          "CAP_LINUX_IMMUTABLE");
}

// On a file system without file attributes (ramfs here; NFS, 9p and many
// FUSE file systems too) FS_IOC_GETFLAGS fails, so no file there can be
// append-only. A file made for an append-only grant there is removed
// again all the same, and each attempt says the same. Run in a child with
// a mount namespace of its own, where the ramfs is mounted.
TEST(OpenFileTest, AFileOnAFileSystemWithoutAttributesIsRemovedAgain) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("ram").c_str(), 0700), 0);
  const std::string path = dir.Join("ram/new.log");
  testing::ChildResult child = testing::RunInChild([&]() -> std::string {
    if (unshare(CLONE_NEWNS) != 0) return absl::StrCat("unshare: ", strerror(errno));
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("ramfs", dir.Join("ram").c_str(), "ramfs", 0, nullptr) != 0 ||
        mkdir(dir.Join("ram/sub").c_str(), 0700) != 0) {
      return absl::StrCat("mount: ", strerror(errno));
    }
    UniqueFd ram(open(dir.Join("ram").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!ram.valid()) return absl::StrCat("open: ", strerror(errno));
    return CreateAppendOnlyTwice(path, ram.get(), "sub/beneath.log",
                                 dir.Join("ram/sub/beneath.log"));
  });
  ExpectRefusedAndRemoved(child, path, "sub/beneath.log", "",
                          ": its file system cannot make files append-only");
}

// Sets or clears the immutable attribute (chattr +i) of `path`; false if it
// cannot (that takes CAP_LINUX_IMMUTABLE).
bool SetImmutable(const std::string& path, bool on) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  int attributes = 0;
  if (!fd || ioctl(fd.get(), FS_IOC_GETFLAGS, &attributes) != 0) return false;
  attributes = on ? (attributes | FS_IMMUTABLE_FL) : (attributes & ~FS_IMMUTABLE_FL);
  return ioctl(fd.get(), FS_IOC_SETFLAGS, &attributes) == 0;
}

// When the kernel refuses the broker's own open (EPERM: an immutable file,
// even to root), the client must not read it as a policy denial
// (kPermissionDenied): it is kFailedPrecondition, saying the broker could not
// open the path, and why.
TEST(OpenFileTest, TheKernelRefusingTheBrokersOpenIsNoPolicyDenial) {
  TempDir dir;
  std::string path = dir.WriteFile("fixed", "x", 0644);
  if (!SetImmutable(path, true)) GTEST_SKIP() << "cannot make a file immutable here";
  struct Restore {
    std::string path;
    ~Restore() { SetImmutable(path, false); }
  } restore{path};
  EXPECT_THAT(OpenFile(path, Access(schema::Access::WRITE), false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("the broker itself could not open the path"),
                             HasSubstr("Operation not permitted"))));
  EXPECT_OK(OpenFile(path, Access(schema::Access::READ), false));
}

// The same for a broker not run as root that may not enter a directory
// (EACCES): the open beneath a directory, and of the directory itself. Run
// in a child whose uids are all nobody's.
TEST(OpenFileTest, AccessDeniedToTheBrokerIsNoPolicyDenial) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  TempDir dir;  // 0700, root's
  std::string path = dir.WriteFile("file", "x", 0600);
  ASSERT_EQ(mkdir(dir.Join("sub").c_str(), 0700), 0);
  testing::ChildResult child = testing::RunInChild([&]() -> std::string {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
      return "setresuid failed";
    }
    std::string out;
    for (const absl::Status& status :
         {OpenFile(path, Access(schema::Access::READ), false).status(),
          OpenDirectory(dir.Join("sub"), false).status()}) {
      absl::StrAppend(&out, static_cast<int>(status.code()), " ", status.message(), "\n");
    }
    return out;
  });
  ASSERT_TRUE(WIFEXITED(child.wait_status) && WEXITSTATUS(child.wait_status) == 0);
  const std::string& out = child.output;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  for (const std::string& line : lines) {
    EXPECT_THAT(line, StartsWith(absl::StrCat(
                          static_cast<int>(absl::StatusCode::kFailedPrecondition), " ")));
    EXPECT_THAT(line, HasSubstr("Permission denied"));
    EXPECT_THAT(line, HasSubstr("the broker itself could not open the path"));
  }
}

TEST(OpenFileTest, RefusesSymlinkAnywhereUnlessFollowing) {
  TempDir dir;
  dir.WriteFile("target", "x");
  ASSERT_EQ(symlink(dir.Join("target").c_str(), dir.Join("link").c_str()), 0);
  ASSERT_EQ(mkdir(dir.Join("real").c_str(), 0700), 0);
  dir.WriteFile("real/inner", "y");
  ASSERT_EQ(symlink(dir.Join("real").c_str(), dir.Join("dirlink").c_str()), 0);
  EXPECT_THAT(OpenFile(dir.Join("link"), Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("symlink")));
  EXPECT_THAT(OpenFile(dir.Join("dirlink/inner"), Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("symlink")));
  EXPECT_OK(OpenFile(dir.Join("link"), Access(schema::Access::READ), true));
}

// A symlink loop is no symlink the broker refuses: where symlinks are
// followed, the kernel's ELOOP is a broken path (kFailedPrecondition, saying
// so), not a policy denial. Where they are not, any symlink is refused.
TEST(OpenFileTest, ALoopIsNoRefusedSymlink) {
  TempDir dir;
  ASSERT_EQ(symlink("loop", dir.Join("loop").c_str()), 0);
  EXPECT_THAT(OpenFile(dir.Join("loop"), Access(schema::Access::READ), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(dir.Join("loop")),
                             HasSubstr("too many levels of symbolic links (a loop"))));
  EXPECT_THAT(OpenFile(dir.Join("loop"), Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("contains a symlink, which is refused")));
}

// In a sticky directory others may write to (/tmp), anyone may create a
// file at a name nobody has taken yet and keep it: a file of another user
// there is refused, whether the open would create it or not, for a file
// capability (its path, or a symlink followed there) and beneath a
// directory alike, before it is opened (nothing truncated). The kernel's
// fs.protected_regular, which refuses O_CREAT opens of such files, is not
// relied on: it may be 0, and the broker's open of the inode it checked
// has no O_CREAT.
TEST(OpenFileTest, RefusesAnotherUsersFileInAStickyDirectoryOthersMayWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  TempDir dir;
  const std::string shared = dir.Join("shared");
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);  // as /tmp, whatever the umask
  const std::string planted = dir.WriteFile("shared/report", "attacker", 0666);
  ASSERT_EQ(chown(planted.c_str(), 65534, 65534), 0);
  ASSERT_EQ(symlink(planted.c_str(), dir.Join("link").c_str()), 0);
  UniqueFd shared_fd(open(shared.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(shared_fd.valid());
  FileOpen create = Access(schema::Access::WRITE);
  create.create = true;
  create.truncate = true;
  const auto refused = [](const std::string& named) {
    return StatusIs(absl::StatusCode::kFailedPrecondition,
                    AllOf(HasSubstr(named + ": is owned by uid 65534, in a sticky directory "
                                            "that everyone may write to (mode 1777"),
                          HasSubstr("fs.protected_regular"), HasSubstr("chown")));
  };
  OpenEffects effects;
  for (const FileOpen& how : {create, Access(schema::Access::READ)}) {
    EXPECT_THAT(OpenFile(planted, how, false, HardLinks::kUnprotected, &effects),
                refused(planted));
    EXPECT_THAT(OpenBeneath(shared_fd.get(), "report", how, HardLinks::kUnprotected, &effects),
                refused("report"));
  }
  EXPECT_THAT(OpenFile(dir.Join("link"), Access(schema::Access::READ), true),
              refused(dir.Join("link") + ": " + planted));
  EXPECT_EQ(ReadWholeFile(planted), "attacker") << "the file was truncated";
  // Writable by a group only, as a shared drop directory: the same.
  ASSERT_EQ(chmod(shared.c_str(), 01770), 0);
  EXPECT_THAT(OpenFile(planted, create, false, HardLinks::kUnprotected, &effects),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("its group may write")));
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  // What no one else could have put there opens: the broker's own file (one
  // the open creates, too), and one of the directory's owner.
  EXPECT_OK(OpenFile(dir.WriteFile("shared/mine", "x", 0644), create, false,
                     HardLinks::kUnprotected, &effects));
  EXPECT_OK(OpenFile(dir.Join("shared/new"), create, false, HardLinks::kUnprotected, &effects));
  EXPECT_OK(OpenBeneath(shared_fd.get(), "new", Access(schema::Access::READ)));
  ASSERT_EQ(chown(shared.c_str(), 65534, 65534), 0);
  EXPECT_OK(OpenFile(planted, Access(schema::Access::READ), false));
}

// A sticky directory others may write to, as /tmp (01777) or a group's
// drop directory (01770), made by the test in a TempDir of its own.
class StickyDirectoryTest : public ::testing::TestWithParam<mode_t> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to give files to another user";
    ASSERT_EQ(mkdir(shared_.c_str(), 0700), 0);
    ASSERT_EQ(chmod(shared_.c_str(), GetParam()), 0);  // whatever the umask
    shared_fd_.reset(open(shared_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(shared_fd_.valid());
  }

  // Makes the directory `name` (in the TempDir), owned by `uid`, mode 0755.
  void MakeDirectory(const std::string& name, uid_t uid) {
    ASSERT_EQ(mkdir(dir_.Join(name).c_str(), 0755), 0);
    ASSERT_EQ(chown(dir_.Join(name).c_str(), uid, uid), 0);
  }

  TempDir dir_;
  const std::string shared_ = dir_.Join("shared");
  UniqueFd shared_fd_;
};

// The refusal of an entry planted at `shown`.
auto Planted(const std::string& shown) {
  return StatusIs(absl::StatusCode::kFailedPrecondition,
                  AllOf(HasSubstr(shown + ": is owned by uid 65534, in a sticky directory"),
                        HasSubstr("chown")));
}

// Anyone may take the free name app in a sticky directory as a directory
// of their own, and put the file of a policy path shared/app/report, or of
// a path app/report beneath a grant of the directory, in it: the directory
// is refused, as a file there is. So is a directory capability at the
// planted name, with the planter's tree beneath it.
TEST_P(StickyDirectoryTest, RefusesADirectoryPlantedOnTheWay) {
  MakeDirectory("shared/app", 65534);
  const std::string report = dir_.WriteFile("shared/app/report", "attacker", 0644);
  ASSERT_EQ(chown(report.c_str(), 65534, 65534), 0);
  const std::string app = dir_.Join("shared/app");
  for (bool follow : {false, true}) {
    EXPECT_THAT(OpenFile(report, Access(schema::Access::READ), follow),
                Planted(report + ": " + app));
    EXPECT_THAT(OpenDirectory(app, follow), Planted(app));
  }
  EXPECT_THAT(OpenBeneath(shared_fd_.get(), "app/report", Access(schema::Access::READ)),
              Planted("app"));
  EXPECT_THAT(OpenBeneath(shared_fd_.get(), "./app/../app/report", Access(schema::Access::READ)),
              Planted("app"));
  FileOpen create = Access(schema::Access::WRITE);
  create.create = true;
  EXPECT_THAT(OpenBeneath(shared_fd_.get(), "app/new", create), Planted("app"));
  EXPECT_THAT(OpenFile(app + "/new", create, false), Planted(app + "/new: " + app));
  EXPECT_NE(access((app + "/new").c_str(), F_OK), 0) << "the broker made a file there";
}

// A symlink planted in a sticky directory, at the name of a followSymlinks
// capability, is refused whatever it leads to (the kernel's
// fs.protected_symlinks rule, which may be 0). So is the broker's own link
// there: another user could have renamed it in from a directory of theirs.
TEST_P(StickyDirectoryTest, RefusesASymlinkPlantedThereWhenFollowing) {
  const std::string target = dir_.WriteFile("target", "root's", 0644);
  const std::string link = dir_.Join("shared/report");
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_THAT(OpenFile(link, Access(schema::Access::READ), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("symlink ", link, " (owner uid ", geteuid(),
                                              "), on the path to ", link,
                                              ", lies in directory ", shared_))));
  ASSERT_EQ(lchown(link.c_str(), 65534, 65534), 0);
  EXPECT_THAT(OpenFile(link, Access(schema::Access::READ), true), Planted(link));
  FileOpen create = Access(schema::Access::WRITE);
  create.create = true;
  EXPECT_THAT(OpenFile(link, create, true), Planted(link));
}

// What no one else could have put there opens: the broker's own directory
// in the sticky one (as every TempDir in /tmp), with another's files and
// directories beneath it, where the sticky rule no longer applies; '..'
// within the grant; links with '..' in them.
TEST_P(StickyDirectoryTest, OpensWhatOnlyTheBrokerCouldHavePutThere) {
  MakeDirectory("shared/mine", 0);
  MakeDirectory("shared/mine/theirs", 65534);
  const std::string file = dir_.WriteFile("shared/mine/theirs/file", "x", 0644);
  ASSERT_EQ(chown(file.c_str(), 65534, 65534), 0);
  EXPECT_OK(OpenFile(file, Access(schema::Access::READ), false));
  EXPECT_OK(OpenBeneath(shared_fd_.get(), "mine/theirs/file", Access(schema::Access::READ)));
  EXPECT_OK(OpenBeneath(shared_fd_.get(), "mine/theirs/../theirs/./file",
                        Access(schema::Access::READ)));
  EXPECT_OK(OpenBeneath(shared_fd_.get(), "mine/..", Access(schema::Access::READ)));
  EXPECT_THAT(OpenBeneath(shared_fd_.get(), "mine/../../shared", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("leaves its directory")));
  EXPECT_THAT(OpenBeneath(shared_fd_.get(), "mine/theirs/file/", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Not a directory")));
  // A relative link whose '..' go above where the walk let go of its fds.
  MakeDirectory("shared/mine/sub", 0);
  ASSERT_EQ(symlink("../../mine/theirs/file", dir_.Join("shared/mine/sub/up").c_str()), 0);
  EXPECT_OK(OpenFile(dir_.Join("shared/mine/sub/up"), Access(schema::Access::READ), true));
  EXPECT_OK(OpenDirectory(dir_.Join("shared/mine"), false));
}

INSTANTIATE_TEST_SUITE_P(EveryoneOrGroup, StickyDirectoryTest, ::testing::Values(01777, 01770));

// With followSymlinks, the broker (root) follows a link only where no user
// but root or itself could have put it or could re-point it: the link is
// theirs, in a directory only they may write, reached through directories
// only they can change (util::SymlinkRule). Before, it followed any link:
// a user who owns the directory of a followed file capability's path
// (/home/alice/report) ran `ln -sf /etc/shadow report`, and every grantee
// got root's fd of /etc/shadow.
TEST(OpenFileTest, FollowsOnlyLinksNoOtherUserCouldHavePlaced) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give links and directories away";
  TempDir dir;
  const std::string secret = dir.WriteFile("secret", "root only", 0600);
  ASSERT_EQ(mkdir(dir.Join("real").c_str(), 0755), 0);
  // The reviewer's layout: a directory of uid 65534's, mode 0755, holding
  // their link report -> a file only root may read.
  const std::string home = dir.Join("home");
  ASSERT_EQ(mkdir(home.c_str(), 0755), 0);
  ASSERT_EQ(chown(home.c_str(), 65534, 65534), 0);
  const std::string report = home + "/re\nport";
  ASSERT_EQ(symlink(secret.c_str(), report.c_str()), 0);
  ASSERT_EQ(lchown(report.c_str(), 65534, 65534), 0);
  const std::string tree = home + "/tree";
  ASSERT_EQ(symlink(dir.Join("real").c_str(), tree.c_str()), 0);
  ASSERT_EQ(lchown(tree.c_str(), 65534, 65534), 0);
  const auto theirs = [](const std::string& link) {
    return StatusIs(absl::StatusCode::kFailedPrecondition,
                    AllOf(HasSubstr(absl::StrCat("symlink ", link, ", on the path to ")),
                          HasSubstr("is owned by uid 65534, not by root or the broker (uid 0): "
                                    "another user could re-point it")));
  };
  EXPECT_THAT(OpenFile(report, Access(schema::Access::READ), true),
              theirs(home + "/re\\x0aport"));
  FileOpen create = Access(schema::Access::WRITE);
  create.create = true;
  EXPECT_THAT(OpenFile(tree + "/new", create, true), theirs(tree));
  EXPECT_NE(access(dir.Join("real/new").c_str(), F_OK), 0) << "the broker made a file there";
  EXPECT_THAT(OpenDirectory(tree, true), theirs(tree));
  // Root's own link in their directory: they could have renamed it in.
  ASSERT_EQ(lchown(report.c_str(), 0, 0), 0);
  EXPECT_THAT(OpenFile(report, Access(schema::Access::READ), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("symlink ", home, "/re\\x0aport (owner uid 0), on "
                                              "the path to ", home, "/re\\x0aport, lies in "
                                              "directory ", home, " (owner uid 65534, mode "
                                              "0755), which another user could change"))));
  // Root's link in root's directory, beneath theirs: they can rename that
  // directory's name away and put their own in its place.
  ASSERT_EQ(mkdir((home + "/sub").c_str(), 0755), 0);
  const std::string beyond = home + "/sub/link";
  ASSERT_EQ(symlink(secret.c_str(), beyond.c_str()), 0);
  EXPECT_THAT(OpenFile(beyond, Access(schema::Access::READ), true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("lies beyond directory ", home))));
  // What they own without a link on the way opens as before.
  const std::string plain = dir.WriteFile("home/plain", "theirs", 0644);
  EXPECT_OK(OpenFile(plain, Access(schema::Access::READ), true));
  // Root's link in root's directory is followed.
  const std::string ours = dir.Join("real/ours");
  ASSERT_EQ(symlink(secret.c_str(), ours.c_str()), 0);
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenFile(ours, Access(schema::Access::READ), true));
  char text[16] = {};
  EXPECT_EQ(read(fd.get(), text, sizeof(text)), 9);
  EXPECT_STREQ(text, "root only");
  const std::string to_real = dir.Join("to-real");
  ASSERT_EQ(symlink(dir.Join("real").c_str(), to_real.c_str()), 0);
  EXPECT_OK(OpenDirectory(to_real, true));
}

TEST(OpenFileTest, RefusesFifoWithoutBlockingAndDirectories) {
  TempDir dir;
  ASSERT_EQ(mkfifo(dir.Join("fifo").c_str(), 0600), 0);
  EXPECT_THAT(OpenFile(dir.Join("fifo"), Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a regular file")));
  EXPECT_THAT(OpenFile(dir.path(), Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// A FIFO would block its opener, and a device's open acts on the device (a
// watchdog starts counting): what is not a regular file is refused before
// anything opens it. inotify reports every open, and none comes.
TEST(OpenFileTest, NeverOpensWhatIsNotARegularFile) {
  TempDir dir;
  std::vector<std::string> specials = {dir.Join("fifo")};
  ASSERT_EQ(mkfifo(specials[0].c_str(), 0600), 0);
  // A device node too, where this test may make one (root, no user namespace).
  if (mknod(dir.Join("null").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0) {
    specials.push_back(dir.Join("null"));
  }
  UniqueFd dirfd(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (const std::string& path : specials) {
    SCOPED_TRACE(path);
    UniqueFd watch(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    ASSERT_GE(inotify_add_watch(watch.get(), path.c_str(), IN_OPEN), 0);
    for (schema::Access access : {schema::Access::READ, schema::Access::WRITE}) {
      EXPECT_THAT(OpenFile(path, Access(access), false),
                  StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr("not a regular file")));
      FileOpen create = Access(access);
      create.create = access != schema::Access::READ;
      EXPECT_THAT(OpenBeneath(dirfd.get(), path.substr(dir.path().size() + 1), create),
                  StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr("not a regular file")));
    }
    char events[256];
    EXPECT_EQ(read(watch.get(), events, sizeof(events)), -1) << "something opened " << path;
    EXPECT_EQ(errno, EAGAIN);
  }
}

// A process that holds a write lease (fcntl F_SETLEASE, F_WRLCK) on a file
// and ignores the lease break (SIGIO), as any owner of a file may: every
// open of the file by another process must wait for it, up to
// fs.lease-break-time (45 s by default), unless it is O_NONBLOCK.
class LeaseHolder {
 public:
  // Forks the holder; leased() says whether it got the lease.
  explicit LeaseHolder(const std::string& path) {
    int ready[2], release[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(release, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls here: the test may have threads.
      close(ready[0]);
      close(release[1]);
      signal(SIGIO, SIG_IGN);
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      char got = fd >= 0 && fcntl(fd, F_SETLEASE, F_WRLCK) == 0 ? 'y' : 'n';
      if (write(ready[1], &got, 1) != 1) _exit(1);
      char byte;
      (void)!read(release[0], &byte, 1);  // until Release or our parent's end
      _exit(0);  // the lease goes with the last fd of its open file
    }
    close(ready[1]);
    release_.reset(release[1]);
    close(release[0]);
    char got = 'n';
    leased_ = pid_ > 0 && read(ready[0], &got, 1) == 1 && got == 'y';
    close(ready[0]);
  }
  ~LeaseHolder() { Release(); }

  bool leased() const { return leased_; }

  // Ends the holder, and with it the lease.
  void Release() {
    release_.reset();
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd release_;
  bool leased_ = false;
};

// The broker's only thread must not wait on a lease another user's process
// holds: the open fails at once (the kernel has asked the holder to let go),
// kUnavailable, saying to try again, and nothing was truncated. Every open
// of an existing file the broker makes: a file capability's, with truncate,
// and open beneath.
TEST(OpenFileTest, ALeasedFileFailsAtOnceInsteadOfBlocking) {
  TempDir dir;
  std::string path = dir.WriteFile("leased", "content", 0600);
  LeaseHolder holder(path);
  if (!holder.leased()) GTEST_SKIP() << "cannot take a file lease here (fs.leases-enable?)";
  UniqueFd dirfd(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dirfd);
  FileOpen truncate = Access(schema::Access::WRITE);
  truncate.truncate = true;
  OpenEffects effects;
  auto opens = std::async(std::launch::async, [&] {
    return std::vector<absl::Status>{
        OpenFile(path, Access(schema::Access::READ), false).status(),
        OpenFile(path, truncate, false, HardLinks::kUnprotected, &effects).status(),
        OpenBeneath(dirfd.get(), "leased", Access(schema::Access::READ_WRITE)).status()};
  });
  // A safety deadline, far below the kernel's 45 s and far above a failed open.
  if (opens.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    holder.Release();  // lets the blocked opens go on, so the test can end
    opens.wait();
    FAIL() << "the open waited on the lease holder (for fs.lease-break-time)";
  }
  for (const absl::Status& status : opens.get()) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                                 AllOf(HasSubstr(path.substr(dir.path().size() + 1)),
                                       HasSubstr("leased by another process"),
                                       HasSubstr("try again"))));
  }
  // Once the lease is gone (before: reading the file would wait on it too),
  // the file is whole, the same opens work, and their fds are not
  // O_NONBLOCK: a client gets the status flags it asked for.
  holder.Release();
  EXPECT_EQ(ReadWholeFile(path), "content") << "the file was truncated";
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenFile(path, Access(schema::Access::READ), false));
  EXPECT_EQ(AccMode(fd.get()), O_RDONLY);
  ASSERT_OK_AND_ASSIGN(fd, OpenBeneath(dirfd.get(), "leased", Access(schema::Access::READ_WRITE)));
  EXPECT_EQ(AccMode(fd.get()), O_RDWR);
}

TEST(OpenFileTest, MissingIsNotFound) {
  EXPECT_THAT(OpenFile("/nonexistent/capbroker", Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/capbroker")));
}

TEST(AccessFlagsTest, UnspecifiedIsInvalid) {
  EXPECT_THAT(AccessFlags(schema::Access::UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

class OpenBeneathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(dir_.Join("root").c_str(), 0700), 0);
    ASSERT_EQ(mkdir(dir_.Join("root/sub").c_str(), 0700), 0);
    dir_.WriteFile("root/sub/file", "inside");
    dir_.WriteFile("secret", "outside");
    ASSERT_EQ(symlink("../secret", dir_.Join("root/up").c_str()), 0);
    ASSERT_EQ(symlink("sub/file", dir_.Join("root/down").c_str()), 0);
    ASSERT_OK_AND_ASSIGN(root_, OpenDirectory(dir_.Join("root"), false));
  }
  TempDir dir_;
  UniqueFd root_;
};

TEST_F(OpenBeneathTest, OpensInside) {
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenBeneath(root_.get(), "sub/file",
                                                Access(schema::Access::READ)));
  char buf[16] = {};
  EXPECT_EQ(read(fd.get(), buf, sizeof(buf)), 6);
  EXPECT_STREQ(buf, "inside");
}

TEST_F(OpenBeneathTest, RefusesEscapes) {
  EXPECT_THAT(OpenBeneath(root_.get(), "../secret", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("leaves its directory")));
  EXPECT_THAT(OpenBeneath(root_.get(), "sub/../../secret", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("leaves its directory")));
  EXPECT_THAT(OpenBeneath(root_.get(), dir_.Join("secret"), Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("relative")));
  EXPECT_THAT(OpenBeneath(root_.get(), "up", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("symlink")));
  // Even a symlink that stays inside is refused.
  EXPECT_THAT(OpenBeneath(root_.get(), "down", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("symlink")));
  EXPECT_THAT(OpenBeneath(root_.get(), "/proc/self/root/etc/passwd",
                          Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(OpenBeneathTest, MalformedPaths) {
  EXPECT_THAT(OpenBeneath(root_.get(), "", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(OpenBeneath(root_.get(), std::string("a\0b", 3), Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(OpenBeneath(root_.get(), std::string(5000, 'a'), Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 4095")));
}

TEST_F(OpenBeneathTest, CreatesWithMaskedMode) {
  FileOpen how = Access(schema::Access::WRITE);
  how.create = true;
  how.mode = 04777;  // setuid must not survive
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenBeneath(root_.get(), "sub/new", how));
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_mode & 07000, 0u);
}

// O_TRUNC empties a file opened O_APPEND or O_RDONLY as well: only write
// and readWrite may truncate, here as in the policy's rule for files.
TEST_F(OpenBeneathTest, TruncateOnlyWithWriteOrReadWrite) {
  for (schema::Access access : {schema::Access::APPEND, schema::Access::READ}) {
    FileOpen how = Access(access);
    how.truncate = true;
    EXPECT_THAT(OpenBeneath(root_.get(), "sub/file", how),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("truncate needs write or readWrite access")));
    EXPECT_THAT(OpenFile(dir_.Join("root/sub/file"), how, false),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("truncate needs write or readWrite access")));
  }
  struct stat st;
  ASSERT_EQ(stat(dir_.Join("root/sub/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 6) << "the file was emptied";
  FileOpen how = Access(schema::Access::READ_WRITE);
  how.truncate = true;
  OpenEffects effects;
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenBeneath(root_.get(), "sub/file", how,
                                                HardLinks::kUnprotected, &effects));
  ASSERT_OK(effects.Complete(fd.get()));
  ASSERT_EQ(stat(dir_.Join("root/sub/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

// Beneath a directory grant, a mount is someone else's doing (a user's FUSE
// mount, whose server could stall the broker): open beneath does not cross
// into one.
TEST_F(OpenBeneathTest, DoesNotCrossIntoAnotherMount) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  // The mount stays in this test binary's own mount namespace.
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
  ASSERT_EQ(mount("tmpfs", dir_.Join("root/sub").c_str(), "tmpfs", 0, "size=64k"), 0);
  dir_.WriteFile("root/sub/mounted", "on the mount");
  // The directory as this mount namespace sees it (root_ is in the old one).
  ASSERT_OK_AND_ASSIGN(root_, OpenDirectory(dir_.Join("root"), false));
  EXPECT_THAT(OpenBeneath(root_.get(), "sub/mounted", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("another mount")));
  EXPECT_THAT(OpenBeneath(root_.get(), "sub", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("another mount")));
  ASSERT_EQ(umount2(dir_.Join("root/sub").c_str(), MNT_DETACH), 0);
  EXPECT_OK(OpenBeneath(root_.get(), "sub/file", Access(schema::Access::READ)));
}

// RESOLVE_BENEATH cannot see a hard link. Where the kernel does not keep
// users from linking files they could not open (fs.protected_hardlinks=0),
// a user who can write in a granted directory could link another's file
// there (`ln /etc/shadow dir/x`), or put one in the place of a file
// capability's file: a file with more than one link is refused before
// anything opens it, truncate included, beneath a directory and as a file
// capability alike.
TEST_F(OpenBeneathTest, RefusesAFileWithMoreLinksWhereTheKernelAllowsAnyLink) {
  ASSERT_EQ(link(dir_.Join("secret").c_str(), dir_.Join("root/linked").c_str()), 0);
  FileOpen truncate = Access(schema::Access::READ_WRITE);
  truncate.truncate = true;
  FileOpen create = Access(schema::Access::WRITE);
  create.create = true;
  OpenEffects effects;
  for (const FileOpen& how : {Access(schema::Access::READ), truncate, create}) {
    EXPECT_THAT(OpenBeneath(root_.get(), "linked", how, HardLinks::kUnprotected, &effects),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("linked: has 2 hard links"),
                               HasSubstr("fs.protected_hardlinks is 0"),
                               HasSubstr("set fs.protected_hardlinks=1"))));
    EXPECT_THAT(OpenFile(dir_.Join("root/linked"), how, false, HardLinks::kUnprotected,
                         &effects),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("root/linked: has 2 hard links")));
  }
  EXPECT_EQ(ReadWholeFile(dir_.Join("secret")), "outside") << "the file was truncated";
  // The default is the careful answer.
  EXPECT_THAT(OpenBeneath(root_.get(), "linked", Access(schema::Access::READ)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(OpenFile(dir_.Join("root/linked"), Access(schema::Access::READ), false),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_OK(OpenFile(dir_.Join("root/linked"), Access(schema::Access::READ), false,
                     HardLinks::kProtected));
  // A file of one link opens, and so does one this open creates.
  EXPECT_OK(OpenBeneath(root_.get(), "sub/file", Access(schema::Access::READ),
                        HardLinks::kUnprotected));
  EXPECT_OK(OpenBeneath(root_.get(), "sub/new", create, HardLinks::kUnprotected));
  // Where the kernel refuses such links, a second link is someone's own
  // doing with a file they could open anyway.
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, OpenBeneath(root_.get(), "linked",
                                                Access(schema::Access::READ),
                                                HardLinks::kProtected));
  char buf[16] = {};
  EXPECT_EQ(read(fd.get(), buf, sizeof(buf)), 7);
  EXPECT_STREQ(buf, "outside");
}

TEST(HardLinkProtectionTest, OnlyOneIsProtected) {
  TempDir dir;
  EXPECT_EQ(ReadHardLinkProtection(dir.WriteFile("one", "1\n").c_str()), HardLinks::kProtected);
  EXPECT_EQ(ReadHardLinkProtection(dir.WriteFile("zero", "0\n").c_str()),
            HardLinks::kUnprotected);
  EXPECT_EQ(ReadHardLinkProtection(dir.WriteFile("odd", "10\n").c_str()),
            HardLinks::kUnprotected);
  EXPECT_EQ(ReadHardLinkProtection(dir.WriteFile("empty", "").c_str()), HardLinks::kUnprotected);
  // Unreadable: fail closed.
  EXPECT_EQ(ReadHardLinkProtection(dir.Join("missing").c_str()), HardLinks::kUnprotected);
  // This host's answer, whatever it is, agrees with the file.
  std::string host = ReadWholeFile(kProtectedHardlinksPath);
  EXPECT_EQ(ReadHardLinkProtection() == HardLinks::kProtected, host == "1\n") << host;
}

TEST_F(OpenBeneathTest, DirectoryOnlyForPlainRead) {
  EXPECT_OK(OpenBeneath(root_.get(), "sub", Access(schema::Access::READ)));
  EXPECT_FALSE(OpenBeneath(root_.get(), "sub", Access(schema::Access::WRITE)).ok());
}

}  // namespace
}  // namespace capbroker::caps

#include "broker/policy/script_exes.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "broker/policy/load_notes.h"
#include "broker/policy/policy_parser.h"
#include "broker/util/mount_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

Policy WithExe(const std::string& exe) {
  absl::StatusOr<Policy> policy = ParsePolicy(
      absl::StrReplaceAll(R"(( capabilities = [ ( name = "m", memory = ( size = 4096 ) ) ],
          principals = [ ( name = "p", match = ( uid = 1000, exe = "$EXE" ),
                           grants = [ "m" ] ) ] ))",
                          {{"$EXE", exe}}),
      "t.capnp");
  EXPECT_OK(policy.status());
  return policy.ok() ? *std::move(policy) : Policy();
}

// This process's mount table, as the broker reads it: a file is looked at
// only on a mount the table lists (by its ID) as a local file system.
util::MountTable OwnMounts() {
  absl::StatusOr<util::MountTable> mounts = util::MountTable::Read();
  EXPECT_OK(mounts.status());
  return mounts.ok() ? *std::move(mounts) : util::MountTable();
}

class ScriptExeNotesTest : public ::testing::Test {
 protected:
  // The notes for a principal whose exe is `exe`, as LoadNotes makes them:
  // this process's table read before, and read again after each open.
  std::vector<std::string> NotesFor(const std::string& exe) {
    return ScriptExeNotes(WithExe(exe), local_, util::MountTable::Read);
  }

  util::MountTable local_ = OwnMounts();
  testing::TempDir dir_;
};

// Whether this process has the file at `path` open (by an O_PATH fd too).
bool IsOpenHere(const std::string& path) {
  const std::map<int, std::string> targets = testing::OpenFdTargets();
  return std::any_of(targets.begin(), targets.end(),
                     [&](const auto& target) { return target.second == path; });
}

// Whether a file was opened for reading or read since the watch was set,
// as inotify reports (an O_PATH open is neither). The events of a call are
// queued before it returns: nothing to wait for.
class ReadWatch {
 public:
  explicit ReadWatch(const std::string& path) : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    EXPECT_TRUE(fd_.valid());
    EXPECT_GE(inotify_add_watch(fd_.get(), path.c_str(), IN_OPEN | IN_ACCESS), 0) << path;
  }

  // Whether any event came since the last call; drains them.
  bool Read() {
    char events[4096];
    const ssize_t n = read(fd_.get(), events, sizeof(events));
    EXPECT_TRUE(n > 0 || errno == EAGAIN) << strerror(errno);
    return n > 0;
  }

 private:
  UniqueFd fd_;
};

TEST_F(ScriptExeNotesTest, NotesAScript) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\necho hi\n", 0755);
  EXPECT_THAT(NotesFor(script),
              ElementsAre("principal 'p': exe " + script +
                          " is a script (its file starts with #!): the kernel runs its "
                          "interpreter and reports that as the client's executable, never "
                          "the script, so this rule will never match"));
  // The same through the process's own mount table.
  EXPECT_EQ(LoadNotes(WithExe(script)).size(), 1u);
}

TEST_F(ScriptExeNotesTest, NothingForABinaryOrWhatCannotBeLookedAt) {
  EXPECT_THAT(NotesFor(dir_.WriteFile("tool", "\x7f" "ELF")), IsEmpty());
  EXPECT_THAT(NotesFor(dir_.WriteFile("short", "#")), IsEmpty());
  EXPECT_THAT(NotesFor(dir_.Join("missing")), IsEmpty());
  // A symlink: the rule never matches anyway (the kernel reports the
  // target); not followed.
  std::string script = dir_.WriteFile("real.sh", "#!/bin/sh\n", 0755);
  ASSERT_EQ(symlink(script.c_str(), dir_.Join("link").c_str()), 0);
  EXPECT_THAT(NotesFor(dir_.Join("link")), IsEmpty());
  // A file nobody may execute runs as no process, so is no script to look
  // into; nor is it read: a pseudo-file's read may do something
  // (/proc/kmsg's takes the kernel's log).
  const std::string unexecutable = dir_.WriteFile("notes.sh", "#!/bin/sh\n", 0644);
  ReadWatch watch(unexecutable);
  EXPECT_THAT(NotesFor(unexecutable), IsEmpty());
  EXPECT_FALSE(watch.Read()) << "the file was opened for reading or read";
  // A FIFO is never opened: no reader waits for a writer.
  ASSERT_EQ(mkfifo(dir_.Join("fifo").c_str(), 0600), 0);
  EXPECT_THAT(NotesFor(dir_.Join("fifo")), IsEmpty());
}

// A script on a file system that may stop answering is not read: the
// broker's only thread would wait with it. The name alone tells: neither
// the file nor the mount table is read again.
TEST_F(ScriptExeNotesTest, DoesNotLookOnARemoteFileSystem) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\n", 0755);
  util::MountTable remote = util::MountTable::Parse(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "41 22 0:40 / " + dir_.path() + " rw - fuse.sshfs me@host: rw\n");
  int reads = 0;
  auto read_own = [&] {
    ++reads;
    return util::MountTable::Read();
  };
  EXPECT_THAT(ScriptExeNotes(WithExe(script), remote, read_own), IsEmpty());
  EXPECT_EQ(reads, 0);
  EXPECT_EQ(ScriptExeNotes(WithExe(script), local_, read_own).size(), 1u);
  EXPECT_EQ(reads, 1);
  // Nothing to open: no table read either.
  EXPECT_THAT(ScriptExeNotes(WithExe(dir_.Join("missing")), local_, read_own), IsEmpty());
  EXPECT_EQ(reads, 1);
}

// A FUSE mount raced into place after the mount table was read: the path's
// name still finds a local file system in the table, but the mount the file
// is found on is a FUSE one (here: the table says so of the test
// directory's own mount, listed at another point). The file is not read:
// its server might never answer. Before, the name alone decided.
TEST_F(ScriptExeNotesTest, LooksAtTheMountTheFileIsFoundOnNotTheName) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\n", 0755);
  UniqueFd fd(open(script.c_str(), O_PATH | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_OK_AND_ASSIGN(int id, util::MountIdOf(fd.get()));
  const std::string table = absl::StrCat("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", id,
                                         " 22 0:40 / /elsewhere rw - fuse.sshfs me@host: rw\n");
  const util::MountTable raced = util::MountTable::Parse(table);
  auto read_raced = [&] { return raced; };
  EXPECT_THAT(ExeIsScript(script, read_raced),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("on a FUSE file system")));
  EXPECT_THAT(ScriptExeNotes(WithExe(script), raced, read_raced), IsEmpty());
  absl::StatusOr<bool> own = ExeIsScript(script, util::MountTable::Read);
  ASSERT_OK(own.status());
  EXPECT_TRUE(*own);
}

// The kernel reuses a freed mount's ID: a local mount listed in the table
// read before may have been unmounted since, and a FUSE mount made (by a
// user, fusermount3 being setuid) with its ID. The mount the file is found
// on is looked up in the table read after the open (which the open fd
// keeps true), not in the one read before, which says local. Here the
// table read before is this process's own (local, under that ID) and the
// one read after says FUSE under it, or lists no mount with it: the file
// is neither opened for reading nor read, and no note is made. Before, the
// ID was looked up in the table read before, and the file read.
TEST_F(ScriptExeNotesTest, LooksUpTheMountIdInATableReadAfterTheOpen) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\n", 0755);
  UniqueFd fd(open(script.c_str(), O_PATH | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_OK_AND_ASSIGN(int id, util::MountIdOf(fd.get()));
  fd.reset();  // so that only ExeIsScript's own fd is open on it below
  const util::Mount* before = local_.FindId(id);
  ASSERT_NE(before, nullptr);
  ASSERT_EQ(util::RemoteFileSystemKind(before->type), std::nullopt) << before->type;
  const util::MountTable reused = util::MountTable::Parse(absl::StrCat(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", id, " 22 0:40 / ", dir_.path(),
      " rw - fuse.sshfs me@host: rw\n"));
  const util::MountTable unlisted =
      util::MountTable::Parse("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
  ReadWatch watch(script);
  int reads = 0;
  bool open_when_read = false;
  auto read_reused = [&] {
    ++reads;
    open_when_read = IsOpenHere(script);
    return reused;
  };
  EXPECT_THAT(ScriptExeNotes(WithExe(script), local_, read_reused), IsEmpty());
  EXPECT_EQ(reads, 1);
  EXPECT_TRUE(open_when_read) << "the table was read before the file was opened";
  EXPECT_FALSE(watch.Read()) << "read " << script;
  EXPECT_THAT(ExeIsScript(script, read_reused),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat(script, " is on a FUSE file system"))));
  EXPECT_THAT(ScriptExeNotes(WithExe(script), local_, [&] { return unlisted; }), IsEmpty());
  EXPECT_FALSE(watch.Read()) << "read " << script;
  EXPECT_THAT(ExeIsScript(script, [&] { return unlisted; }),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat(script, " is on mount ", id,
                                              ", which the mount table does not list"))));
  // A table that cannot be read: its error, naming the file.
  auto fail = [] { return absl::StatusOr<util::MountTable>(absl::ResourceExhaustedError("big")); };
  EXPECT_THAT(ScriptExeNotes(WithExe(script), local_, fail), IsEmpty());
  EXPECT_THAT(ExeIsScript(script, fail),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("cannot tell which file system holds ", script, ": big")));
  EXPECT_FALSE(watch.Read()) << "read " << script;
  // The watch sees a read: with this process's own table the file is read.
  EXPECT_EQ(NotesFor(script).size(), 1u);
  EXPECT_TRUE(watch.Read());
}

// Principals whose exes are `exes`, one each, named p0, p1, ...
Policy WithExes(const std::vector<std::string>& exes) {
  std::vector<PrincipalSpec> principals;
  for (size_t i = 0; i < exes.size(); ++i) {
    PrincipalSpec principal;
    principal.name = absl::StrCat("p", i);
    principal.uid = 1000;
    principal.exe = exes[i];
    principals.push_back(std::move(principal));
  }
  return Policy("t.capnp", {}, std::move(principals));
}

// The mount table is read once per batch of exe files, not once per
// principal: /proc/self/mountinfo grows with the mounts, and the broker
// serves nobody while it loads a policy (4096 principals on a host with
// 3000 mounts took 95 s). Before, each principal's exe cost a read, the
// same path as often as principals named it.
TEST_F(ScriptExeNotesTest, ReadsTheMountTableOncePerBatchNotPerPrincipal) {
  constexpr size_t kPrincipals = 3 * kExeBatch;
  int reads = 0;
  size_t most_open = 0;
  auto read_counted = [&] {
    ++reads;
    const std::map<int, std::string> targets = testing::OpenFdTargets();
    most_open = std::max<size_t>(
        most_open, std::count_if(targets.begin(), targets.end(), [&](const auto& target) {
          return absl::StartsWith(target.second, dir_.path() + "/");
        }));
    return util::MountTable::Read();
  };
  // One script named by every principal: one open, one read, a note each.
  const std::string shared = dir_.WriteFile("shared.sh", "#!/bin/sh\n", 0755);
  std::vector<std::string> notes =
      ScriptExeNotes(WithExes(std::vector<std::string>(kPrincipals, shared)), local_,
                     read_counted);
  EXPECT_EQ(notes.size(), kPrincipals);
  EXPECT_THAT(notes.back(), HasSubstr(absl::StrCat("principal 'p", kPrincipals - 1,
                                                   "': exe ", shared, " is a script")));
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(most_open, 1u);
  // Distinct files: one read per kExeBatch of them, never more than that
  // many open at once; a note for each script, in policy order.
  std::vector<std::string> exes;
  for (size_t i = 0; i < kPrincipals + 1; ++i) {
    exes.push_back(dir_.WriteFile(absl::StrCat("tool", i), i % 2 == 0 ? "#!/bin/sh\n" : "\x7f" "ELF", 0755));
  }
  reads = 0;
  most_open = 0;
  notes = ScriptExeNotes(WithExes(exes), local_, read_counted);
  EXPECT_EQ(reads, 4);  // ceil((3 * kExeBatch + 1) / kExeBatch)
  EXPECT_EQ(most_open, kExeBatch);
  ASSERT_EQ(notes.size(), kPrincipals / 2 + 1);
  EXPECT_THAT(notes.front(), HasSubstr("principal 'p0': exe " + exes[0]));
  EXPECT_THAT(notes.back(), HasSubstr(absl::StrCat("principal 'p", kPrincipals, "': exe ",
                                                   exes[kPrincipals])));
  // A batch in which nothing could be opened reads no table.
  reads = 0;
  EXPECT_THAT(ExesAreScripts(std::vector<std::string>(kExeBatch + 1, dir_.Join("missing")),
                             read_counted),
              ::testing::Each(::testing::Truly(
                  [](const absl::StatusOr<bool>& script) { return !script.ok(); })));
  EXPECT_EQ(reads, 0);
  // The table read for a batch serves all of it, and its error each path.
  auto fail = [] { return absl::StatusOr<util::MountTable>(absl::ResourceExhaustedError("big")); };
  const std::vector<absl::StatusOr<bool>> failed =
      ExesAreScripts({exes[0], dir_.Join("missing"), exes[1]}, fail);
  ASSERT_EQ(failed.size(), 3u);
  EXPECT_THAT(failed[0], StatusIs(absl::StatusCode::kResourceExhausted,
                                  absl::StrCat("cannot tell which file system holds ", exes[0],
                                               ": big")));
  EXPECT_FALSE(failed[1].ok());
  EXPECT_THAT(failed[1].status().message(), Not(HasSubstr("cannot tell")));
  EXPECT_THAT(failed[2], StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr(exes[1])));
}

// The lookup asks only the kernel's caches (RESOLVE_CACHED): a name they
// do not hold is "cannot tell", not a lookup that may wait on a file
// system. A new process's /proc entries are such names until looked up.
TEST_F(ScriptExeNotesTest, LooksUpOnlyWhatTheKernelHasCached) {
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[1]);
    char byte;
    (void)!read(ready[0], &byte, 1);  // until the parent closes its end
    _exit(0);
  }
  close(ready[0]);
  const std::string path = absl::StrCat("/proc/", child, "/personality");
  const absl::StatusOr<bool> script = ExeIsScript(path, util::MountTable::Read);
  const bool exists = access(path.c_str(), F_OK) == 0;  // looked up only now
  close(ready[1]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(exists);
  EXPECT_THAT(script, StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace capbroker

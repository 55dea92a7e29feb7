#include "broker/policy/script_exes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "broker/policy/load_notes.h"
#include "broker/policy/policy_parser.h"
#include "broker/util/mount_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

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
  util::MountTable local_ = OwnMounts();
  testing::TempDir dir_;
};

TEST_F(ScriptExeNotesTest, NotesAScript) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\necho hi\n");
  EXPECT_THAT(ScriptExeNotes(WithExe(script), local_),
              ElementsAre("principal 'p': exe " + script +
                          " is a script (its file starts with #!): the kernel runs its "
                          "interpreter and reports that as the client's executable, never "
                          "the script, so this rule will never match"));
  // The same through the process's own mount table.
  EXPECT_EQ(LoadNotes(WithExe(script)).size(), 1u);
}

TEST_F(ScriptExeNotesTest, NothingForABinaryOrWhatCannotBeLookedAt) {
  EXPECT_THAT(ScriptExeNotes(WithExe(dir_.WriteFile("tool", "\x7f" "ELF")), local_), IsEmpty());
  EXPECT_THAT(ScriptExeNotes(WithExe(dir_.WriteFile("short", "#")), local_), IsEmpty());
  EXPECT_THAT(ScriptExeNotes(WithExe(dir_.Join("missing")), local_), IsEmpty());
  // A symlink: the rule never matches anyway (the kernel reports the
  // target); not followed.
  std::string script = dir_.WriteFile("real.sh", "#!/bin/sh\n");
  ASSERT_EQ(symlink(script.c_str(), dir_.Join("link").c_str()), 0);
  EXPECT_THAT(ScriptExeNotes(WithExe(dir_.Join("link")), local_), IsEmpty());
  // A FIFO is never opened: no reader waits for a writer.
  ASSERT_EQ(mkfifo(dir_.Join("fifo").c_str(), 0600), 0);
  EXPECT_THAT(ScriptExeNotes(WithExe(dir_.Join("fifo")), local_), IsEmpty());
}

// A script on a file system that may stop answering is not read: the
// broker's only thread would wait with it.
TEST_F(ScriptExeNotesTest, DoesNotLookOnARemoteFileSystem) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\n");
  util::MountTable remote = util::MountTable::Parse(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "41 22 0:40 / " + dir_.path() + " rw - fuse.sshfs me@host: rw\n");
  EXPECT_THAT(ScriptExeNotes(WithExe(script), remote), IsEmpty());
  EXPECT_EQ(ScriptExeNotes(WithExe(script), local_).size(), 1u);
}

// A FUSE mount raced into place after the mount table was read: the path's
// name still finds a local file system in the table, but the mount the file
// is found on is a FUSE one (here: the table says so of the test
// directory's own mount, listed at another point). The file is not read:
// its server might never answer. Before, the name alone decided.
TEST_F(ScriptExeNotesTest, LooksAtTheMountTheFileIsFoundOnNotTheName) {
  std::string script = dir_.WriteFile("backup.sh", "#!/bin/sh\n");
  UniqueFd fd(open(script.c_str(), O_PATH | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_OK_AND_ASSIGN(int id, util::MountIdOf(fd.get()));
  const std::string table = absl::StrCat("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", id,
                                         " 22 0:40 / /elsewhere rw - fuse.sshfs me@host: rw\n");
  const util::MountTable raced = util::MountTable::Parse(table);
  EXPECT_THAT(ExeIsScript(script, raced),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("on a FUSE file system")));
  EXPECT_THAT(ScriptExeNotes(WithExe(script), raced), IsEmpty());
  // A mount the table does not list at all: cannot tell either.
  EXPECT_THAT(ExeIsScript(script, util::MountTable::Parse("22 1 8:1 / / rw - ext4 x rw\n")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("after the mount table")));
  absl::StatusOr<bool> own = ExeIsScript(script, local_);
  ASSERT_OK(own.status());
  EXPECT_TRUE(*own);
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
  const absl::StatusOr<bool> script = ExeIsScript(path, local_);
  const bool exists = access(path.c_str(), F_OK) == 0;  // looked up only now
  close(ready[1]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(exists);
  EXPECT_THAT(script, StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace capbroker

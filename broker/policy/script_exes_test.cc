#include "broker/policy/script_exes.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_replace.h"
#include "broker/policy/load_notes.h"
#include "broker/policy/policy_parser.h"
#include "broker/util/mount_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
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

class ScriptExeNotesTest : public ::testing::Test {
 protected:
  // Every path on one local file system.
  util::MountTable local_ = util::MountTable::Parse("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
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

}  // namespace
}  // namespace capbroker

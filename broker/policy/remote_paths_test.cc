#include "broker/policy/remote_paths.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "broker/policy/load_notes.h"
#include "broker/policy/policy_parser.h"
#include "broker/util/mount_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/fuse_file.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kPolicy[] = R"(( capabilities = [
    ( name = "local", file = ( path = "$LOCAL", access = read ) ),
    ( name = "remote-file", file = ( path = "$FILE", access = read ) ),
    ( name = "remote-dir", directory = ( path = "$DIR", access = read ) ),
    ( name = "shm", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "me", match = ( uid = 1000 ),
                   grants = [ "local", "remote-file", "remote-dir", "shm" ] ) ] ))";

Policy MakePolicy(const std::string& local, const std::string& file, const std::string& dir) {
  absl::StatusOr<Policy> policy = ParsePolicy(
      absl::StrReplaceAll(kPolicy, {{"$LOCAL", local}, {"$FILE", file}, {"$DIR", dir}}),
      "t.capnp");
  EXPECT_OK(policy.status());
  return policy.ok() ? *std::move(policy) : Policy();
}

TEST(RemotePathNotesTest, NotesEachFileAndDirectoryOnARemoteFileSystem) {
  util::MountTable mounts = util::MountTable::Parse(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "41 22 0:40 / /mnt/nfs rw - nfs4 srv:/export rw\n"
      "42 22 0:41 / /home/me/remote rw - fuse.sshfs me@host: rw\n");
  Policy policy = MakePolicy("/etc/motd", "/mnt/nfs/data", "/home/me/remote");
  EXPECT_THAT(
      RemotePathNotes(policy, mounts),
      ElementsAre(
          "capability 'remote-file' (/mnt/nfs/data) lies on NFS (nfs4 on /mnt/nfs), which "
          "may stop answering: the broker opens it itself, in its only thread, and while it "
          "does not answer, no client is served; keep capability paths on local file systems",
          HasSubstr("capability 'remote-dir' (/home/me/remote) lies on FUSE (fuse.sshfs on "
                    "/home/me/remote)")));
  EXPECT_THAT(RemotePathNotes(MakePolicy("/etc/motd", "/etc/a", "/etc"), mounts), IsEmpty());
}

// An NFS share behind autofs (x-systemd.automount, or automount(8)) is
// listed as autofs until it is first accessed, which the broker's first
// open does, waiting on the server: noted, saying it is an automount point.
TEST(RemotePathNotesTest, NotesAPathUnderAnAutomountPoint) {
  util::MountTable mounts = util::MountTable::Parse(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "50 22 0:50 / /mnt/share rw,relatime shared:30 - autofs systemd-1 "
      "rw,fd=52,pgrp=1,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=1234\n");
  Policy policy = MakePolicy("/etc/motd", "/mnt/share/data", "/etc");
  EXPECT_THAT(RemotePathNotes(policy, mounts),
              ElementsAre(
                  "capability 'remote-file' (/mnt/share/data) lies under an automount point "
                  "(autofs on /mnt/share): what is mounted there when it is first opened may "
                  "be a FUSE or network file system, which may stop answering: the broker "
                  "opens it itself, in its only thread, and while it does not answer, no "
                  "client is served; keep capability paths on local file systems"));
}

// On this machine, from its own mount table: a FUSE file system whose
// server answers nothing (FuseFile holding every request) is noted, at
// once: finding it asks the file system nothing. Local paths are not.
TEST(RemotePathNotesTest, ANoteForAHungFuseMountComesWithoutAskingIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a FUSE file system";
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << strerror(errno);
  testing::TempDir dir;
  const std::string local = dir.WriteFile("local", "hello\n", 0644);
  ASSERT_EQ(mkdir(dir.Join("fuse").c_str(), 0755), 0) << strerror(errno);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::FuseFile> fuse,
                       testing::FuseFile::Mount(dir.Join("fuse"), "data", local,
                                                /*cache=*/false));
  Policy policy = MakePolicy(local, fuse->path(), dir.Join("fuse"));
  EXPECT_THAT(RemotePathNotes(policy, util::MountTable::Parse("")), IsEmpty());
  fuse->HoldRequests();
  // A safety net for a check that would wait on the server: the FuseFile's
  // destructor frees the wait, and the test fails instead of hanging.
  std::future<std::vector<std::string>> notes =
      std::async(std::launch::async, [&] { return LoadNotes(policy); });
  if (notes.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    fuse.reset();  // fails the held request: the check returns
    FAIL() << "the check waited on the FUSE server";
  }
  EXPECT_THAT(notes.get(),
              ElementsAre(HasSubstr("capability 'remote-file' (" + fuse->path() +
                                    ") lies on FUSE (fuse.capbroker-test on " +
                                    dir.Join("fuse") + ")"),
                          HasSubstr("capability 'remote-dir' (" + dir.Join("fuse") +
                                    ") lies on FUSE (")));
}

}  // namespace
}  // namespace capbroker

#include "broker/util/mount_table.h"

#include <fcntl.h>

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::util {
namespace {

using ::testing::Optional;

// Lines as the kernel writes them (proc(5)): optional fields before " - ",
// none, or several; a mount point with an escaped space; two mounts on one
// point, the second on top; a line cut short, skipped.
constexpr char kMountInfo[] =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:27 / /proc rw,nosuid - proc proc rw\n"
    "41 22 0:40 / /mnt/nfs rw,relatime shared:7 master:2 - nfs4 srv:/export rw,vers=4.2\n"
    "42 22 0:41 / /mnt/my\\040files rw - fuse.sshfs me@host: rw,user_id=0\n"
    "43 22 0:42 / /srv rw - ext4 /dev/sdb1 rw\n"
    "44 43 0:43 / /srv rw - cifs //host/share rw\n"
    "45 22 0:44 / /mnt/nfs/local rw - tmpfs tmpfs rw\n"
    "46 22 0:45 /\n";

TEST(MountTableTest, FindsTheMountOnTopHoldingAPath) {
  MountTable table = MountTable::Parse(kMountInfo);
  ASSERT_EQ(table.mounts().size(), 7u);
  auto type = [&](const char* path) -> std::string {
    const Mount* mount = table.Find(path);
    return mount == nullptr ? "(none)" : mount->type;
  };
  EXPECT_EQ(type("/"), "ext4");
  EXPECT_EQ(type("/etc/motd"), "ext4");
  EXPECT_EQ(type("/mnt/nfs"), "nfs4");
  EXPECT_EQ(type("/mnt/nfs/a/b"), "nfs4");
  EXPECT_EQ(type("/mnt/nfsx/a"), "ext4");  // not beneath /mnt/nfs
  EXPECT_EQ(type("/mnt/nfs/local/f"), "tmpfs");
  EXPECT_EQ(type("/mnt/my files/f"), "fuse.sshfs");
  EXPECT_EQ(type("/srv/share/f"), "cifs");  // the later of the two on /srv
  EXPECT_EQ(type("relative/path"), "(none)");
  EXPECT_EQ(table.Find("/mnt/my files")->point, "/mnt/my files");
}

// Every escape mountinfo uses, undone once: a newline, a tab, a backslash
// (so "\134040" is the text "\040", not a space), one at the very end of
// the field; and an escaped type.
TEST(MountTableTest, UndoesEachEscapeOnce) {
  MountTable table = MountTable::Parse(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "50 22 0:50 / /mnt/a\\012b rw - tmpfs t rw\n"
      "51 22 0:51 / /mnt/c\\011d rw - tmpfs t rw\n"
      "52 22 0:52 / /mnt/e\\134040f rw - fuse.my\\040fs me rw\n"
      "53 22 0:53 / /mnt/g\\040 rw - nfs4 srv:/x rw\n"
      "54 22 0:54 / /mnt/h\\8x\\04 rw - tmpfs t rw\n");
  ASSERT_EQ(table.mounts().size(), 6u);
  auto type = [&](const std::string& path) -> std::string {
    const Mount* mount = table.Find(path);
    return mount == nullptr ? "(none)" : mount->type;
  };
  EXPECT_EQ(type("/mnt/a\nb/f"), "tmpfs");
  EXPECT_EQ(type("/mnt/a\\012b/f"), "ext4");
  EXPECT_EQ(type("/mnt/c\td/f"), "tmpfs");
  EXPECT_EQ(type("/mnt/e\\040f/f"), "fuse.my fs");
  EXPECT_EQ(type("/mnt/e f/f"), "ext4");
  EXPECT_EQ(type("/mnt/g /f"), "nfs4");
  // Not escapes (a digit out of range, too few digits): kept as written.
  EXPECT_EQ(type("/mnt/h\\8x\\04/f"), "tmpfs");
  EXPECT_THAT(RemoteFileSystemKind(table.Find("/mnt/e\\040f")->type),
              Optional(std::string("FUSE")));
}

TEST(MountTableTest, NamesTheFileSystemsThatMayStopAnswering) {
  for (const char* type : {"fuse", "fuseblk", "fuse.sshfs", "fuse.glusterfs", "virtiofs"}) {
    EXPECT_THAT(RemoteFileSystemKind(type), Optional(std::string("FUSE"))) << type;
  }
  EXPECT_THAT(RemoteFileSystemKind("nfs"), Optional(std::string("NFS")));
  EXPECT_THAT(RemoteFileSystemKind("nfs4"), Optional(std::string("NFS")));
  EXPECT_THAT(RemoteFileSystemKind("cifs"), Optional(std::string("SMB")));
  EXPECT_THAT(RemoteFileSystemKind("smb3"), Optional(std::string("SMB")));
  EXPECT_THAT(RemoteFileSystemKind("ceph"), Optional(std::string("Ceph")));
  EXPECT_THAT(RemoteFileSystemKind("9p"), Optional(std::string("9P")));
  EXPECT_THAT(RemoteFileSystemKind("afs"), Optional(std::string("AFS")));
  EXPECT_THAT(RemoteFileSystemKind("coda"), Optional(std::string("Coda")));
  EXPECT_THAT(RemoteFileSystemKind("gfs2"), Optional(std::string("GFS2")));
  EXPECT_THAT(RemoteFileSystemKind("ocfs2"), Optional(std::string("OCFS2")));
  // What autofs mounts on first access (an NFS share, often) is not in the
  // table until then.
  EXPECT_THAT(RemoteFileSystemKind("autofs"), Optional(std::string("automount")));
  for (const char* type : {"ext4", "xfs", "btrfs", "tmpfs", "overlay", "proc", "fusectl",
                           "nfsd", "squashfs", ""}) {
    EXPECT_EQ(RemoteFileSystemKind(type), std::nullopt) << type;
  }
}

// This process's own table: "/" is in it, and the test's temporary
// directory (on a local file system here) is on no remote one.
TEST(MountTableTest, ReadsThisProcesssTable) {
  ASSERT_OK_AND_ASSIGN(MountTable table, MountTable::Read());
  ASSERT_NE(table.Find("/"), nullptr);
  const char* tmp = std::getenv("TEST_TMPDIR");
  const Mount* mount = table.Find(tmp != nullptr ? tmp : "/tmp");
  ASSERT_NE(mount, nullptr);
  EXPECT_EQ(RemoteFileSystemKind(mount->type), std::nullopt) << mount->type;
}

// A file already opened is found by the ID of the mount it is on (the
// table's first field, and the mnt_id of the fd's fdinfo), which holds
// whatever has been mounted over its path since.
TEST(MountTableTest, FindsTheMountOfAnOpenFileByItsId) {
  const MountTable parsed = MountTable::Parse(
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "41 22 0:40 / /mnt rw - fuse.sshfs me@host: rw\n"
      "x 22 0:41 / /odd rw - tmpfs tmpfs rw\n");
  ASSERT_NE(parsed.FindId(41), nullptr);
  EXPECT_EQ(parsed.FindId(41)->point, "/mnt");
  EXPECT_EQ(parsed.FindId(22)->type, "ext4");
  EXPECT_EQ(parsed.FindId(7), nullptr);
  EXPECT_EQ(parsed.FindId(-1), nullptr);  // "x" is no ID
  const char* tmp = std::getenv("TEST_TMPDIR");
  UniqueFd fd(open(tmp != nullptr ? tmp : "/tmp", O_PATH | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_OK_AND_ASSIGN(int id, MountIdOf(fd.get()));
  ASSERT_OK_AND_ASSIGN(MountTable table, MountTable::Read());
  const Mount* by_id = table.FindId(id);
  ASSERT_NE(by_id, nullptr) << id;
  EXPECT_EQ(by_id, table.Find(tmp != nullptr ? tmp : "/tmp"));
  EXPECT_THAT(MountIdOf(-1), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace capbroker::util

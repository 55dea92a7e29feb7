// MountTable: which file system holds a path, as the kernel's mount table
// says, without asking any file system.
//
// statfs(2) tells a file system's type too (f_type: FUSE_SUPER_MAGIC,
// NFS_SUPER_MAGIC, ...), but it asks the file system itself: FUSE sends its
// server a STATFS request, NFS and CIFS ask theirs over the network, and
// the look-up of the path may ask them as well. One that does not answer
// would hold the caller, the broker's only thread, on the very mounts a
// caller wants to know about. /proc/self/mountinfo is the kernel's own
// table: reading it waits for no file system.
//
// A path's mount is found by its name as written: the mount whose mount
// point is the longest leading run of its components (the last one listed
// among mounts on the same point, which is the one on top). Symlinks on
// the path are not followed: where one leads to another file system, the
// mount found is that of the link. A file already opened is found by its
// mount's ID instead (MountIdOf, FindId): that is the mount it is on, even
// if another was mounted over its path since. Look the ID up in a table
// read after the open, never before: the kernel gives a new mount the ID
// of one unmounted, so an older table may list another file system under
// it. The open fd pins its mount, so a table read while it is held names
// that mount under that ID.
#ifndef CAPBROKER_BROKER_UTIL_MOUNT_TABLE_H_
#define CAPBROKER_BROKER_UTIL_MOUNT_TABLE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker::util {

// One line of the mount table.
struct Mount {
  int id = -1;        // the mount's ID (mountinfo's first field); -1 if none
  std::string point;  // absolute, with mountinfo's octal escapes undone
  std::string type;   // the file system's type: "ext4", "nfs4", "fuse.sshfs"
};

class MountTable {
 public:
  // The mount table of this process's mount namespace
  // (/proc/self/mountinfo).
  static absl::StatusOr<MountTable> Read();
  // The table in `mountinfo`, in the format of /proc/PID/mountinfo (see
  // proc(5)); lines that do not have its form are skipped.
  static MountTable Parse(absl::string_view mountinfo);

  // The mount that holds the absolute path `path` (see above); nullptr when
  // none does (a relative path, or a table without "/").
  const Mount* Find(absl::string_view path) const;

  // The mount whose ID is `id` (see MountIdOf, and the top of this file on
  // when to read the table); nullptr when the table has none (mounted since
  // the table was read, unmounted or detached, or in another namespace).
  const Mount* FindId(int id) const;

  const std::vector<Mount>& mounts() const { return mounts_; }

 private:
  std::vector<Mount> mounts_;
};

// The ID of the mount that holds what `fd` (borrowed; O_PATH will do)
// refers to, as the mnt_id line of /proc/self/fdinfo/N says: the mount the
// fd was opened on, whatever has been mounted over its path since, found
// without asking any file system (fstatfs would). For MountTable::FindId
// in a table read after `fd` was opened (see the top of this file).
absl::StatusOr<int> MountIdOf(int fd);

// Whether a file system of type `type` (as the mount table gives it) is
// served by a process or over the network, so that it may stop answering
// and hold whoever waits on it: FUSE ("fuse", "fuseblk", "fuse.*", and
// virtiofs, FUSE to a host's server), NFS, SMB/CIFS, Ceph, 9P, AFS, Coda,
// and the cluster file systems GFS2, OCFS2 and Lustre; and autofs
// (kAutomount), an automount point (automount(8), x-systemd.automount):
// it shows as autofs until first accessed, when it mounts what may be any
// of those, and that first access waits for it. The kind's name ("FUSE",
// "NFS", ..., kAutomount), or nullopt for any other type.
std::optional<std::string> RemoteFileSystemKind(absl::string_view type);

// RemoteFileSystemKind's name for an automount point.
inline constexpr absl::string_view kAutomount = "automount";

}  // namespace capbroker::util

#endif  // CAPBROKER_BROKER_UTIL_MOUNT_TABLE_H_

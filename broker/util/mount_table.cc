#include "broker/util/mount_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::util {
namespace {

constexpr char kMountInfo[] = "/proc/self/mountinfo";
// A mount table larger than this is not read: thousands of mounts take a
// few hundred KiB.
constexpr size_t kMaxMountTableBytes = 16 * 1024 * 1024;

// mountinfo's escapes (\040 for a space, \011, \012, \134) undone.
std::string Unescape(absl::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const absl::string_view digits = field.substr(i + 1, 3);
      if (digits[0] >= '0' && digits[0] <= '3' && digits[1] >= '0' && digits[1] <= '7' &&
          digits[2] >= '0' && digits[2] <= '7') {
        out.push_back(static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 +
                                        (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// Whether the mount point `point` holds `path`: equal, or a leading run of
// its components.
bool Holds(absl::string_view point, absl::string_view path) {
  if (point == "/") return absl::StartsWith(path, "/");
  return absl::StartsWith(path, point) &&
         (path.size() == point.size() || path[point.size()] == '/');
}

}  // namespace

absl::StatusOr<MountTable> MountTable::Read() {
  CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(RetryEintr([] {
                                            return open(kMountInfo, O_RDONLY | O_CLOEXEC);
                                          }),
                                          absl::StrCat("open(", kMountInfo, ")")));
  std::string text;
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = RetryEintr([&] { return read(fd.get(), buffer, sizeof(buffer)); });
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(", kMountInfo, ")"));
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > kMaxMountTableBytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          kMountInfo, " is larger than ", kMaxMountTableBytes, " bytes: not read"));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return Parse(text);
}

MountTable MountTable::Parse(absl::string_view mountinfo) {
  MountTable table;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    // ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 9) continue;
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") ++separator;
    if (separator + 1 >= fields.size()) continue;
    Mount mount;
    if (!absl::SimpleAtoi(fields[0], &mount.id) || mount.id < 0) mount.id = -1;
    mount.point = Unescape(fields[4]);
    mount.type = Unescape(fields[separator + 1]);
    if (!absl::StartsWith(mount.point, "/") || mount.type.empty()) continue;
    table.mounts_.push_back(std::move(mount));
  }
  return table;
}

const Mount* MountTable::Find(absl::string_view path) const {
  const Mount* found = nullptr;
  for (const Mount& mount : mounts_) {
    // `>=`: of mounts on the same point, the last listed is on top.
    if (Holds(mount.point, path) &&
        (found == nullptr || mount.point.size() >= found->point.size())) {
      found = &mount;
    }
  }
  return found;
}

const Mount* MountTable::FindId(int id) const {
  if (id < 0) return nullptr;
  for (const Mount& mount : mounts_) {
    if (mount.id == id) return &mount;
  }
  return nullptr;
}

absl::StatusOr<int> MountIdOf(int fd) {
  const std::string path = absl::StrCat("/proc/self/fdinfo/", fd);
  CB_ASSIGN_OR_RETURN(UniqueFd info, TakeFd(RetryEintr([&] {
                                              return open(path.c_str(), O_RDONLY | O_CLOEXEC);
                                            }),
                                            absl::StrCat("open(", path, ")")));
  // A few lines (pos, flags, mnt_id, ino), then the file's own (an inotify
  // or epoll fd lists more): mnt_id is among the first hundred bytes.
  char text[1024];
  const ssize_t n = RetryEintr([&] { return read(info.get(), text, sizeof(text)); });
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(", path, ")"));
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(text, static_cast<size_t>(n)), '\n')) {
    int id = -1;
    if (absl::ConsumePrefix(&line, "mnt_id:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &id) && id >= 0) {
      return id;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(path, " has no mnt_id line"));
}

std::optional<std::string> RemoteFileSystemKind(absl::string_view type) {
  if (type == "fuse" || type == "fuseblk" || absl::StartsWith(type, "fuse.") ||
      type == "virtiofs") {
    return "FUSE";
  }
  if (type == "nfs" || type == "nfs4") return "NFS";
  if (type == "cifs" || type == "smb3" || type == "smbfs" || type == "smb") return "SMB";
  if (type == "ceph") return "Ceph";
  if (type == "9p") return "9P";
  if (type == "afs" || type == "openafs") return "AFS";
  if (type == "coda") return "Coda";
  if (type == "gfs2" || type == "gfs2meta") return "GFS2";
  if (type == "ocfs2") return "OCFS2";
  if (type == "lustre") return "Lustre";
  // Listed as autofs until first accessed; then what it mounts (often an
  // NFS share) is listed on top, but until then only this says it may be.
  if (type == "autofs") return std::string(kAutomount);
  return std::nullopt;
}

}  // namespace capbroker::util

#include "broker/sandbox/minimal_root.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/sandbox/hidden_paths.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {
namespace {

// Where the new root is assembled. Mounting over the host's /tmp hides it in
// this mount namespace only (/ was made private first), and after
// pivot_root the host /tmp is gone with the rest of the old root. Sources
// under /tmp must be opened before: the program is (see EnterMinimalRoot).
constexpr const char* kStaging = "/tmp";

// A small root: it holds only directories, symlinks and mount points.
constexpr const char* kRootOptions = "mode=0755,size=1m,nr_inodes=4096";

absl::Status Mount(const char* source, const std::string& target, const char* type,
                   unsigned long flags, const char* data) {
  if (mount(source, target.c_str(), type, flags, data) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount(", source == nullptr ? "none" : source,
                                           ", ", target, type ? ", " : "", type ? type : "", ")"));
  }
  return absl::OkStatus();
}

// Sets `attr` on the mount at `target` and every mount beneath it: unlike a
// MS_REMOUNT, mount_setattr(AT_RECURSIVE) reaches the submounts a MS_REC bind
// brought along. Flags the kernel locked (because the mount came from a more
// privileged namespace) can only be added, which is all this does.
absl::Status SetMountAttr(const std::string& target, uint64_t attr,
                          bool recursive = true) {
  struct mount_attr ma = {};
  ma.attr_set = attr;
  if (mount_setattr(AT_FDCWD, target.c_str(), recursive ? AT_RECURSIVE : 0, &ma,
                    sizeof ma) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount_setattr(", target, ")"));
  }
  return absl::OkStatus();
}

absl::Status BindReadOnly(const std::string& source, const std::string& target) {
  CB_RETURN_IF_ERROR(Mount(source.c_str(), target, nullptr, MS_BIND | MS_REC, nullptr));
  return SetMountAttr(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("mkdir(", path, ")"));
  }
  return absl::OkStatus();
}

// Creates every directory of `path` below `root`, and an empty file at
// `path` itself to bind a file onto, unless something is there already.
absl::Status MakeFileMountPoint(const std::string& root, absl::string_view path) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  std::string current = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    absl::StrAppend(&current, "/", parts[i]);
    CB_RETURN_IF_ERROR(MakeDir(current));
  }
  std::string file = absl::StrCat(root, path);
  struct stat st;
  if (lstat(file.c_str(), &st) == 0) return absl::OkStatus();
  CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444),
                                          absl::StrCat("open(", file, ", O_CREAT)")));
  return absl::OkStatus();
}

// /usr and friends: a bind mount for a directory, the same symlink for a
// symlink, nothing for what the host does not have.
absl::Status AddSystemDirectory(const std::string& root, const char* dir) {
  struct stat st;
  if (lstat(dir, &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, absl::StrCat("lstat(", dir, ")"));
  }
  std::string target = absl::StrCat(root, dir);
  if (S_ISLNK(st.st_mode)) {
    char link[PATH_MAX];
    ssize_t n = readlink(dir, link, sizeof link - 1);
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink(", dir, ")"));
    link[n] = '\0';
    if (symlink(link, target.c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("symlink(", link, ", ", target, ")"));
    }
    return absl::OkStatus();
  }
  if (!S_ISDIR(st.st_mode)) return absl::OkStatus();
  CB_RETURN_IF_ERROR(MakeDir(target));
  return BindReadOnly(dir, target);
}

constexpr std::pair<const char*, const char*> kDevLinks[] = {
    {"fd", "/proc/self/fd"},
    {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"},
};

absl::Status AddDev(const std::string& root) {
  std::string dev = absl::StrCat(root, "/dev");
  CB_RETURN_IF_ERROR(MakeDir(dev));
  CB_RETURN_IF_ERROR(Mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC,
                           "mode=0755,size=64k,nr_inodes=64"));
  for (const char* name : kDevices) {
    std::string host = absl::StrCat("/dev/", name);
    // A container may lack one (/dev/tty); the service then lacks it too.
    if (access(host.c_str(), F_OK) != 0) continue;
    std::string target = absl::StrCat(dev, "/", name);
    CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666),
                                            absl::StrCat("open(", target, ", O_CREAT)")));
    CB_RETURN_IF_ERROR(Mount(host.c_str(), target, nullptr, MS_BIND, nullptr));
  }
  // The device binds stay writable (/dev/null must be); no set-id, no exec.
  CB_RETURN_IF_ERROR(SetMountAttr(dev, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  for (const auto& [link, target] : kDevLinks) {
    if (symlink(target, absl::StrCat(dev, "/", link).c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("symlink(", target, ", /dev/", link, ")"));
    }
  }
  // The /dev tmpfs itself (not the devices on it) becomes read-only.
  return SetMountAttr(dev, MOUNT_ATTR_RDONLY, /*recursive=*/false);
}

}  // namespace

bool IsInSystemDirectory(absl::string_view path) {
  for (const char* dir : kSystemDirectories) {
    if (absl::StartsWith(path, dir) &&
        (path.size() == strlen(dir) || path[strlen(dir)] == '/')) {
      return true;
    }
  }
  return false;
}

bool IsNormalAbsolutePath(absl::string_view path) {
  if (path.empty() || path[0] != '/' || path.size() >= PATH_MAX) return false;
  for (absl::string_view part : absl::StrSplit(path.substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

namespace {

// Fills the staging tmpfs at `root` and makes it the root (pivot_root):
// everything between mounting the staging tmpfs and the old root's detach.
absl::Status PopulateAndPivot(const std::string& root, const MinimalRootSpec& spec) {
  const bool bind_program = spec.program_fd >= 0;
  for (const char* dir : kSystemDirectories) {
    CB_RETURN_IF_ERROR(AddSystemDirectory(root, dir));
  }
  CB_RETURN_IF_ERROR(MakeDir(root + "/etc"));
  CB_RETURN_IF_ERROR(BindReadOnly("/etc", root + "/etc"));

  CB_RETURN_IF_ERROR(MakeDir(root + "/tmp"));
  CB_RETURN_IF_ERROR(Mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           absl::StrCat("mode=1777,size=", kTmpBytes,
                                        ",nr_inodes=", kTmpInodes).c_str()));

  // Mounting proc in a user namespace needs a fully visible proc in the
  // mount namespace (the kernel's mnt_too_revealing check): the host's is,
  // until the old root is detached, so /proc comes before pivot_root.
  if (spec.mount_proc) {
    CB_RETURN_IF_ERROR(MakeDir(root + "/proc"));
    CB_RETURN_IF_ERROR(MountProc(root + "/proc"));
  }
  CB_RETURN_IF_ERROR(AddDev(root));

  if (bind_program) {
    CB_RETURN_IF_ERROR(MakeFileMountPoint(root, spec.program));
    std::string target = root + spec.program;
    CB_RETURN_IF_ERROR(Mount(absl::StrCat("/proc/self/fd/", spec.program_fd).c_str(),
                             target, nullptr, MS_BIND, nullptr));
    CB_RETURN_IF_ERROR(SetMountAttr(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  }
  CB_RETURN_IF_ERROR(HidePaths(root, spec.hidden_paths, spec.service_fs_ids));

  // pivot_root(".", "."): the old root ends up stacked on the new one, and
  // is then detached, without needing a directory to put it in.
  if (chdir(root.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("chdir(", root, ")"));
  if (syscall(SYS_pivot_root, ".", ".") != 0) return ErrnoStatus(errno, "pivot_root(., .)");
  return absl::OkStatus();
}

}  // namespace

absl::Status MountProc(const std::string& target) {
  return Mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr);
}

absl::Status MountOwnProcOverHosts() {
  CB_RETURN_IF_ERROR(Mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
  return MountProc("/proc");
}

namespace {

// The payload by which an error of EnterMinimalRoot says that the caller
// has no usable root left.
constexpr absl::string_view kNoUsableRoot = "capbroker.no_usable_root";

// `status` with `before` and `after` its message, and the payload.
absl::Status WithoutUsableRoot(const absl::Status& status, absl::string_view before,
                               absl::string_view after) {
  absl::Status left(status.code(), absl::StrCat(before, status.message(), after));
  left.SetPayload(kNoUsableRoot, absl::Cord("1"));
  return left;
}

// The steps after pivot_root: the new root is the caller's from then on,
// whatever fails.
absl::Status FinishRoot() {
  if (umount2(".", MNT_DETACH) != 0) return ErrnoStatus(errno, "umount2(old root, MNT_DETACH)");
  if (chdir("/") != 0) return ErrnoStatus(errno, "chdir(/)");
  struct mount_attr ma = {};
  ma.attr_set = MOUNT_ATTR_RDONLY;
  if (mount_setattr(AT_FDCWD, "/", 0, &ma, sizeof ma) != 0) {
    return ErrnoStatus(errno, "mount_setattr(/, MOUNT_ATTR_RDONLY)");
  }
  return absl::OkStatus();
}

}  // namespace

bool LeftWithoutUsableRoot(const absl::Status& status) {
  return status.GetPayload(kNoUsableRoot).has_value();
}

absl::Status EnterMinimalRoot(const MinimalRootSpec& spec) {
  // Nothing done here may propagate back to the host.
  CB_RETURN_IF_ERROR(Mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
  const std::string root = kStaging;
  CB_RETURN_IF_ERROR(Mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, kRootOptions));
  absl::Status built = PopulateAndPivot(root, spec);
  if (!built.ok()) {
    // With everything mounted beneath it. Until pivot_root has succeeded,
    // the staging tmpfs is still at /tmp of the host's tree.
    if (umount2(root.c_str(), MNT_DETACH) == 0) return built;
    absl::Status detach = ErrnoStatus(errno, absl::StrCat("umount2(", root, ", MNT_DETACH)"));
    return WithoutUsableRoot(built, "", absl::StrCat("; and the half-built root stays mounted over ",
                                                     root, ": ", detach.message()));
  }
  absl::Status finished = FinishRoot();
  if (!finished.ok()) {
    // pivot_root has made the new root the caller's: there is no going
    // back to the host's tree as it was, and the new root is not what it
    // should be (the old root still stacked on it, or writable).
    return WithoutUsableRoot(finished, "after pivot_root into the minimal root: ", "");
  }
  return absl::OkStatus();
}

std::vector<std::string> SystemDirectoriesPresent() {
  std::vector<std::string> present;
  for (const char* dir : kSystemDirectories) {
    struct stat st;
    if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)) present.push_back(dir);
  }
  return present;
}

}  // namespace capbroker::sandbox

// The service's filesystem: a minimal read-only root in its mount namespace.
//
// The new root is a small tmpfs holding read-only bind mounts of the system
// directories (/usr, /bin, /sbin, /lib, /lib32, /lib64, /libx32: those that
// exist; a host symlink such as Debian 12's /bin -> usr/bin is recreated as
// a symlink), /etc read-only, the program itself read-only at its real path
// (every link resolved) when that lies elsewhere, a private /tmp, a /proc of the service's own pid
// namespace and a /dev with null, zero, full, random, urandom and tty bound
// from the host. Nothing else of the host is visible: no /home, /root, /run,
// /var, host /tmp, nor the broker's socket; and paths of /etc the broker
// keeps to itself (its policy) are hidden (hidden_paths.h).
//
// Runs in the child, in a new mount namespace, while it still has
// CAP_SYS_ADMIN over that namespace (before the ids change).
#ifndef CAPBROKER_BROKER_SANDBOX_MINIMAL_ROOT_H_
#define CAPBROKER_BROKER_SANDBOX_MINIMAL_ROOT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::sandbox {

// The system directories, read-only and executable in the new root.
inline constexpr const char* kSystemDirectories[] = {
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};

// Devices bound from the host into the new /dev.
inline constexpr const char* kDevices[] = {"null", "zero", "full",
                                           "random", "urandom", "tty"};

// Size limit of the private /tmp, in bytes.
inline constexpr unsigned long long kTmpBytes = 64ull << 20;

// Inode limit of the private /tmp: one per page of kTmpBytes, as many files
// as the size allows when each holds a page of data. Without it tmpfs takes
// half of RAM in pages, and empty files cost no size: each pins an inode
// and a dentry the kernel cannot reclaim (1.3 KB of slab with a
// 200-character name), outside RLIMIT_AS and any cgroup but memoryMax's:
// a million empty files pinned 1.28 GB. At this bound they pin about
// 21 MB, a third of the data kTmpBytes allows.
inline constexpr unsigned long long kTmpInodes = kTmpBytes / 4096;

struct MinimalRootSpec {
  // The program's real path (no link on it), absolute, without "." or
  // ".." components.
  std::string program;
  // The program opened (O_PATH) before anything was mounted, to be bound
  // read-only at `program` (borrowed); -1 when `program` lies in a system
  // directory and needs no bind of its own.
  int program_fd = -1;
  // Mount a /proc. Only possible in a new pid namespace: mounting proc needs
  // CAP_SYS_ADMIN over the pid namespace's owner, and the host's /proc would
  // show the host's processes.
  bool mount_proc = true;
  // Host paths to hide under an empty read-only file or directory, where
  // the root holds them (HidePaths).
  std::vector<std::string> hidden_paths;
  // The caller runs with the service's fs ids (SwitchFsIds): HidePaths'
  // `as_service`.
  bool service_fs_ids = false;
};

// Whether `path` (absolute, normalized) lies in one of kSystemDirectories.
bool IsInSystemDirectory(absl::string_view path);

// Whether `path` is absolute and has no empty, "." or ".." component.
bool IsNormalAbsolutePath(absl::string_view path);

// Builds the new root and enters it (pivot_root); on return the working
// directory is the new "/", the old root is detached and the root tmpfs is
// read-only.
//
// The root is assembled on a tmpfs mounted over /tmp. When building it
// fails, that tmpfs is detached again, so that a caller going on without
// the minimal root (best effort) has the host's tree as it was, /tmp
// included, rather than a half-built root over /tmp. Should detaching it
// fail too, or anything fail once pivot_root has made the new root the
// caller's (the old root's detach, the root's read-only remount), there is
// no tree left to go on in: the error names the step and
// LeftWithoutUsableRoot() is true of it, and the caller must fail whatever
// the requirement.
absl::Status EnterMinimalRoot(const MinimalRootSpec& spec);

// Mounts a proc of the caller's pid namespace at `target`, read-only,
// nosuid, nodev, noexec: the one way the sandbox mounts proc, in the minimal
// root and over the host's /proc (MountOwnProcOverHosts). In a user
// namespace the kernel allows it only while a fully visible proc is in the
// mount namespace (its mnt_too_revealing check): the host's /proc.
absl::Status MountProc(const std::string& target);

// For a service with its own mount and pid namespaces but no minimal root
// (a best-effort root that could not be built): makes every mount private
// (nothing propagates to the host), then mounts the service's own proc over
// the host's /proc, which would show every host process, their command
// lines, the host's mount table and network namespace.
absl::Status MountOwnProcOverHosts();

// Whether `status`, an error of EnterMinimalRoot, left the caller with no
// usable root: the half-built one still mounted over /tmp, or a failure
// after pivot_root.
bool LeftWithoutUsableRoot(const absl::Status& status);

// The system directories that are real directories in the current root (as
// opposed to symlinks to another of them), for Landlock rules.
std::vector<std::string> SystemDirectoriesPresent();

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_MINIMAL_ROOT_H_

// A cgroup v2 of the service's own, for limits setrlimit cannot express.
//
// The broker creates `<parent>/capbroker-<name>-<id>` in a delegated cgroup
// directory it can write, writes memory.max and pids.max, and the service
// is created in it with clone3(CLONE_INTO_CGROUP), so that it is never
// outside its limits, not even for an instant. The parent must have the
// memory and pids controllers in its cgroup.subtree_control.
#ifndef CAPBROKER_BROKER_SANDBOX_CGROUP_H_
#define CAPBROKER_BROKER_SANDBOX_CGROUP_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/sandbox/settings.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {

// Checks `dir` as capbrokerd checks its --cgroup DIR at start, before it
// serves: a directory on a cgroup v2 file system, in which the broker can
// create a cgroup (a probe child is made and removed again: the directory
// is delegated to the broker's user, or the broker is root), whose
// cgroup.subtree_control enables the memory or the pids controller (or
// both) for the cgroups made in it. Returns what it offers. Errors:
// kNotFound (no such directory), kFailedPrecondition (not cgroup v2, no
// controller enabled), kPermissionDenied (cannot create a cgroup there), or
// the errno status of a failed call; every message names `dir` and says
// how to fix it.
absl::StatusOr<CgroupParent> CheckCgroupParent(absl::string_view dir);

// Kills every process in the cgroup `path` and its descendants: writes "1"
// to its cgroup.kill (Linux 5.14), which sends SIGKILL to each as one
// operation that a fork cannot escape. The processes exit afterwards, not
// yet on return: the cgroup is empty once its cgroup.events says
// "populated 0". kUnimplemented when the kernel has no cgroup.kill.
absl::Status KillCgroup(const std::string& path);

// An inotify fd (non-blocking, close-on-exec) that becomes readable when the
// cgroup.events of the cgroup `path` changes, as it does when the cgroup
// empties ("populated 0"); for an event loop, which cannot use the file's
// own poll (always readable, with POLLPRI for a change). Read it to
// rearm it (DrainEvents).
absl::StatusOr<UniqueFd> WatchCgroupEvents(const std::string& path);

// Reads what `inotify_fd` (borrowed, non-blocking) holds, so that it is not
// readable until the next change.
void DrainEvents(int inotify_fd);

// The cgroup directory of one service, owned: removed when the object goes,
// unless it was handed over (Release) first. A launch that fails before its
// service runs in the cgroup leaves nothing behind, whichever step failed.
class ServiceCgroup {
 public:
  // Creates the cgroup `leaf` in `parent` and writes the limits that are not
  // 0. On failure nothing is left behind. kFailedPrecondition (with the
  // reason) when the parent is not a writable cgroup v2 directory or lacks
  // the controller a limit needs.
  static absl::StatusOr<ServiceCgroup> Create(absl::string_view parent,
                                              absl::string_view leaf,
                                              uint64_t memory_max,
                                              uint64_t pids_max);

  ServiceCgroup(ServiceCgroup&& other) noexcept;
  // Removes the directory this object held before (as the destructor).
  ServiceCgroup& operator=(ServiceCgroup&& other) noexcept;
  // Removes the directory unless it was handed over or removed already. A
  // failure (EBUSY: a process is still in it) is logged to stderr; one
  // already gone is no failure.
  ~ServiceCgroup();

  const std::string& path() const { return path_; }
  // The cgroup directory (O_DIRECTORY | O_CLOEXEC), for CLONE_INTO_CGROUP.
  int fd() const { return fd_.get(); }

  // Hands the directory over: closes the fd and returns the path, which the
  // caller removes (rmdir) once no process is in it. The object is empty
  // afterwards.
  std::string Release();

  // Removes the directory (rmdir); the kernel refuses while a process is in
  // it. The object is empty afterwards.
  absl::Status Remove();

 private:
  ServiceCgroup(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  // Remove() for the destructor and assignment: logs instead of returning.
  void RemoveOrLog();

  std::string path_;
  UniqueFd fd_;
};

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_CGROUP_H_

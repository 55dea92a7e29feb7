// Hiding host paths inside the service's minimal root.
//
// The minimal root binds all of /etc (libraries and programs read their
// configuration there), and with it whatever else /etc holds that is none
// of a service's business: the broker's own policy names every service,
// every capability's path and every principal's uid. A hidden path gets an
// empty read-only directory (over a directory) or an empty read-only file
// (over anything else) mounted on it, as systemd's InaccessiblePaths= does:
// the service sees the name, never the content.
//
// Runs in the child while the new root is assembled (minimal_root.h), with
// CAP_SYS_ADMIN over its mount namespace.
#ifndef CAPBROKER_BROKER_SANDBOX_HIDDEN_PATHS_H_
#define CAPBROKER_BROKER_SANDBOX_HIDDEN_PATHS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::sandbox {

// OK when `path` can be hidden: absolute, without empty, "." or ".."
// components; kInvalidArgument naming it otherwise. The launcher checks a
// spec's paths with it before the clone; HidePaths checks again.
absl::Status CheckHiddenPath(absl::string_view path);

// Hides each of `paths` (absolute, without "." or ".." components) that the
// root being assembled at `root` holds. A path is resolved inside `root`
// (RESOLVE_IN_ROOT), so its symlinks lead where they will lead for the
// service; a path the root does not hold (not in /etc or a system
// directory) is left alone, since the service cannot see it anyway. The
// empty directory and file are read-only, nosuid, nodev and noexec.
//
// `as_service`: the caller runs with the service's fs ids (SwitchFsIds)
// and the service's supplementary groups or more. A path these ids cannot
// reach (EACCES: a directory on the way they may not search, such as a
// policy in a root-only directory of /etc) is then left alone too: the
// service, with the same ids, no more groups and no capabilities, cannot
// reach it either. Otherwise (the broker's root ids) EACCES is an error:
// root being refused says nothing of what other ids may reach (a
// root-squashing NFS export).
absl::Status HidePaths(const std::string& root, const std::vector<std::string>& paths,
                       bool as_service);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_HIDDEN_PATHS_H_

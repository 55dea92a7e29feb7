// The kernel's rule for files in sticky directories that others may write
// to (fs.protected_regular), applied by the broker itself, whatever the
// sysctl says.
//
// In a sticky directory that is group- or world-writable (/tmp, /var/tmp, a
// shared drop directory), anyone who may write there can create a file at a
// name nobody has taken yet, and keep it theirs: the sticky bit keeps
// others from removing or renaming it. A policy path there, or a file
// beneath a directory grant there, may be such a file: its owner reads
// what the broker's clients write into it and chooses what they read. With
// fs.protected_regular=1 the kernel refuses an O_CREAT open of such a file
// by anyone but its owner (the systemd and Debian default; the kernel's
// own is 0), but only with O_CREAT, and the broker's open of an existing
// inode (through /proc/self/fd, see open_path.cc) never carries O_CREAT.
// So the broker applies the rule to every open it makes for a client, with
// or without create, and to every entry on the way: a directory planted at a
// free name (/tmp/app, for /tmp/app/report) would hand its owner every name
// beneath it, and a planted symlink the file it leads to.
#ifndef CAPBROKER_BROKER_CAPS_STICKY_DIRECTORY_H_
#define CAPBROKER_BROKER_CAPS_STICKY_DIRECTORY_H_

#include <sys/stat.h>
#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::caps {

// Whether the broker, running as `broker_euid`, may go through the entry
// `entry` (a file, a directory, a symlink) that it found in the directory
// `directory` (both as fstat gives them). kFailedPrecondition, starting
// with `what` (which names the entry: "open /tmp/report", "open
// /tmp/app/report: /tmp/app"), naming its owner and the rule and saying
// what to do, when the directory is sticky and writable by its group or by
// others, and the entry is owned by neither `broker_euid` nor the
// directory's owner, as the kernel decides with fs.protected_regular=2 for
// files and fs.protected_symlinks for links. The broker checks it at every
// step of its own path lookup (path_walk.h).
absl::Status CheckStickyDirectoryOwner(const struct stat& directory, const struct stat& entry,
                                       uid_t broker_euid, absl::string_view what);

}  // namespace capbroker::caps

#endif  // CAPBROKER_BROKER_CAPS_STICKY_DIRECTORY_H_

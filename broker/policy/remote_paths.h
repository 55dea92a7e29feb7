// RemotePathNotes: a note for each capability whose path lies on a file
// system that may stop answering.
//
// The broker opens every file and directory capability itself, in its only
// thread: when it grants one to a client, and when a service that is
// granted one starts. On a FUSE or network file system whose server stops
// answering, that open waits (for FUSE, even SIGKILL waits) until the
// server answers, and no client is served meanwhile: status, connects and
// SIGTERM all wait. The policy is not refused for it (such a mount may be
// what the admin means), but capbrokerd says so when it loads the policy
// (at start and on SIGHUP), and `capctl policy check` prints the same
// notes.
//
// Which file system holds a path is read from the mount table of the
// caller's mount namespace, without asking any file system (util::
// MountTable): checking cannot stall on the mounts it warns about.
#ifndef CAPBROKER_BROKER_POLICY_REMOTE_PATHS_H_
#define CAPBROKER_BROKER_POLICY_REMOTE_PATHS_H_

#include <string>
#include <vector>

#include "broker/policy/policy.h"
#include "broker/util/mount_table.h"

namespace capbroker {

// One line each (no trailing newline, not escaped), in policy order, for
// the file and directory capabilities of `policy` whose path lies on a
// FUSE or network file system (util::RemoteFileSystemKind) of `mounts`.
std::vector<std::string> RemotePathNotes(const Policy& policy, const util::MountTable& mounts);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_REMOTE_PATHS_H_

// ScriptExeNotes: a note for each principal whose `exe` names a script.
//
// The kernel runs a script (a file that starts with "#!") by running its
// interpreter, and /proc/PID/exe, which the broker reads to identify a
// client (broker/peer), names the interpreter (/usr/bin/bash), never the
// script: an `exe` rule naming a script never matches. The policy is not
// refused for it (such a rule fails closed, and the file may be replaced
// by a binary later), but capbrokerd says so when it loads the policy (at
// start and on SIGHUP), and `capctl policy check` prints the same notes,
// as for RemotePathNotes.
//
// Looking costs an open and a two-byte read of each `exe` file, done with
// care: the path is resolved refusing symlinks (a link there makes the
// rule fail anyway, see BrokerContext), only a regular file is opened
// (never a FIFO or a device), and never on a FUSE or network file system
// or under an automount point, as the mount table (util::MountTable) says
// without asking any file system: the broker's only thread must not wait
// on one that does not answer. What cannot be looked at (missing,
// unreadable, on such a file system) gets no note.
#ifndef CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_
#define CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_

#include <string>
#include <vector>

#include "broker/policy/policy.h"
#include "broker/util/mount_table.h"

namespace capbroker {

// One line each (no trailing newline, not escaped), in policy order, for
// the principals of `policy` whose `exe` is a regular file that starts
// with "#!", looked at as above with `mounts` for the file systems.
std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_

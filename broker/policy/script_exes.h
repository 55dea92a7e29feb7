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
// on one that does not answer. The path is checked by its name in the
// table read before (which skips most such rules without an open); then
// it is looked up from the kernel's caches alone (openat2 RESOLVE_CACHED),
// and the mount the file was found on checked by its ID in the table read
// again after that open, so that one mounted over the path after the first
// read (a user racing a FUSE mount into place) is not asked either. Not in
// the table read before: the kernel reuses the ID of a mount unmounted
// since, and a FUSE mount given the ID of a local one listed there would
// pass for it. The open fd pins its mount, so the ID cannot change meaning
// between the open and the second read. That second read (of
// /proc/self/mountinfo) is made once per `exe` rule that passes the name
// check, at policy load only. What cannot be looked at (missing,
// unreadable, not in the caches, on such a file system, the table not
// readable) gets no note.
#ifndef CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_
#define CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "broker/policy/policy.h"
#include "broker/util/mount_table.h"

namespace capbroker {

// Reads the mount table afresh, after a file is opened (see above):
// util::MountTable::Read; a test hands its own.
using MountTableReader = absl::FunctionRef<absl::StatusOr<util::MountTable>()>;

// One line each (no trailing newline, not escaped), in policy order, for
// the principals of `policy` whose `exe` is a regular file that starts
// with "#!", looked at as above: `mounts`, the table read before, for the
// name check, and `read_mounts`, called once for each `exe` that passes
// it, for the mount the file is found on (ExeIsScript).
std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts,
                                        MountTableReader read_mounts);

// Whether the file at the absolute `path` is a regular file whose first two
// bytes are "#!", as the kernel's binfmt_script tests, looked at as above:
// the mount the file is found on is looked up by its ID in the table
// `read_mounts` returns, called once, after the open and only if it
// succeeds. kUnavailable when that cannot be told without asking a file
// system: not in the kernel's caches (EAGAIN), or on a mount that is not
// in that table or is a FUSE, network or automounted one. Another error
// for a file that cannot be looked at (missing, a symlink on the path) or
// a table that cannot be read (its error, naming `path`).
absl::StatusOr<bool> ExeIsScript(const std::string& path, MountTableReader read_mounts);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_

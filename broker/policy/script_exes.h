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
// rule fail anyway, see BrokerContext), only a regular file with an
// execute bit is opened (never a FIFO, a device, or a pseudo-file such as
// /proc/kmsg, whose read acts), and never on a FUSE or network file system
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
// between the open and the second read. What cannot be looked at
// (missing, unreadable, not in the caches, on such a file system, the
// table not readable) gets no note.
//
// The cost is paid at policy load, on the broker's only thread, while it
// serves nobody: each distinct `exe` path is looked at once, however many
// principals name it, and the second read of the table (of
// /proc/self/mountinfo, which grows with the mounts: thousands on a host
// full of containers) is made once per batch of up to kExeBatch files held
// open together, not once per file (once per file, 4096 principals on a
// host with 3000 mounts took 95 s, past systemd's start timeout). A mount
// ID the kernel never reuses (statx STATX_MNT_ID_UNIQUE) would let the
// table read before serve for all, but it needs Linux 6.8, and Debian 12
// ships 6.1.
#ifndef CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_
#define CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "broker/policy/policy.h"
#include "broker/util/mount_table.h"

namespace capbroker {

// Reads the mount table afresh, after a file is opened (see above):
// util::MountTable::Read; a test hands its own.
using MountTableReader = absl::FunctionRef<absl::StatusOr<util::MountTable>()>;

// How many `exe` files are held open (O_PATH) at once for one read of the
// mount table: a bound on the fds taken at policy load, well within the
// room the broker keeps for its own (daemon.cc's kBrokerOwnFds). They are
// closed before ScriptExeNotes returns, on the broker's only thread, so no
// client is refused for them; a file not opened for want of fds gets no
// note.
inline constexpr size_t kExeBatch = 32;

// One line each (no trailing newline, not escaped), in policy order, for
// the principals of `policy` whose `exe` is a regular file that starts
// with "#!", looked at as above: `mounts`, the table read before, for the
// name check, and, for the distinct paths that pass it, ExesAreScripts
// with `read_mounts`.
std::vector<std::string> ScriptExeNotes(const Policy& policy, const util::MountTable& mounts,
                                        MountTableReader read_mounts);

// For each absolute path of `paths`, in order: whether the file there is a
// regular file whose first two bytes are "#!", as the kernel's binfmt_script
// tests, looked at as above. The paths are opened in batches of up to
// kExeBatch; after each batch's opens, if any succeeded, `read_mounts` is
// called once, and the mount each file is found on is looked up by its ID
// in the table it returns. kUnavailable when that cannot be told without
// asking a file system: not in the kernel's caches (EAGAIN), or on a mount
// that is not in that table or is a FUSE, network or automounted one.
// Another error for a file that cannot be looked at (missing, a symlink on
// the path) or a table that cannot be read (its error, naming the path).
std::vector<absl::StatusOr<bool>> ExesAreScripts(absl::Span<const std::string> paths,
                                                 MountTableReader read_mounts);

// ExesAreScripts for one path.
absl::StatusOr<bool> ExeIsScript(const std::string& path, MountTableReader read_mounts);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SCRIPT_EXES_H_

// LoadPolicyFile: reads the policy file from disk, refusing files an
// unprivileged user could have written, then parses it.
//
// The policy decides what every client may open, so a policy anyone but
// root (or the broker's own user) can change is a privilege escalation.
//
// The path is walked one name at a time from `/` (broker/util/
// trusted_path.h, the same walk as for the socket's directory): every
// directory on the way must be owned by root or the broker's euid and not
// writable by group or others unless it is sticky (as /tmp is: others may
// add names there, but not rename ours away, nor move in a directory of
// root's, which takes write permission on it), since whoever can write one
// could rename another file into the policy's place. The policy's own
// directory must not be writable by group or others even if sticky: there,
// whenever the policy's name is free (an editor's save, a removal), anyone
// could rename into it a file of root's they hold (a hard link, or one root
// wrote into a directory of theirs), and it would pass every check on the
// file. Every symlink on the way must be owned by root or the broker's
// euid, since its owner could re-point it at a directory of their own.
// The file is then opened relative to the directory the walk reached, with
//   O_RDONLY | O_CLOEXEC  - nothing leaks into children;
//   O_NOFOLLOW            - a symlink as the last component is refused, so
//                           what is checked and read is the file named, not
//                           whatever a link points to today (give the real
//                           path: `readlink -f`);
//   O_NONBLOCK | O_NOCTTY - a FIFO or terminal put in its place cannot hang
//                           the broker or become its controlling tty;
// and then checked through the open fd (no check-then-open race): a regular
// file, owned by root or the broker's euid, not writable by group or others,
// at most kMaxPolicyBytes.
#ifndef CAPBROKER_BROKER_POLICY_POLICY_FILE_H_
#define CAPBROKER_BROKER_POLICY_POLICY_FILE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/policy.h"

namespace capbroker {

// Loads and parses the policy at `path`, for a broker that offers `broker`
// (see BrokerContext: capbrokerd always says what it offers). Errors:
// kNotFound (no such file, or directory on the way), kFailedPrecondition (a
// symlink, not a regular file, a path ending in '/', '.' or '..' ("dir/",
// "dir/.."), wrong owner, writable by others; a directory or symlink on the
// way that another user could change; or its own directory writable by
// others, sticky or not), kResourceExhausted (too large),
// kInvalidArgument (the text is wrong, see ParsePolicy, and nothing else),
// or the errno status of a failed call (but never kInvalidArgument: an
// EINVAL is kFailedPrecondition). A message quotes the
// path, and whatever it names from the disk (where a symlink leads),
// escaped (EscapedKeepingUtf8): it may be printed as it is.
//
// Unless `broker` sets resolve_program, the policy's `exe` paths, and its
// capability paths that do not follow symlinks, are checked with
// ResolveProgramPath, without waiting for a file system (`may_block`
// false): one through a symlink of root's or the broker's is refused.
// Likewise, unless it sets check_followed_path, the capability paths that
// follow symlinks are checked with CheckFollowedCapabilityPath: one through
// a link or directory another user could change is refused.
absl::StatusOr<Policy> LoadPolicyFile(absl::string_view path, const BrokerContext& broker);

// The path the kernel would report as the executable of a process that runs
// the program at `path` (or that the broker's open of a capability's path
// would reach): every symlink resolved. For a program not there (yet), its
// longest existing directory resolved, and the rest as written.
// kFailedPrecondition when `path` is itself a symlink to nothing. Only a
// symlink that no user but root or this process's euid could have put in
// place or could re-point counts (util::ResolveTrustedLinks): through any
// other (another user's link, or one in a directory another user may
// write), where the path leads tells nothing, and whoever owns it must not
// be able to have the policy refused; that is kUnavailable, as is what
// cannot be told otherwise (not cached, not searchable, ...). Without
// `may_block`, only what the kernel's caches settle is looked at
// (RESOLVE_CACHED): a file system that does not answer (FUSE, NFS) cannot
// hold the caller.
absl::StatusOr<std::string> ResolveProgramPath(const std::string& path, bool may_block);

// For a capability path with followSymlinks = true, for this process's euid
// (util::CheckFollowedPath): kFailedPrecondition when it runs through a
// symlink the broker would not follow (another user could have put it there
// or could re-point it) or through a directory another user could change;
// kUnavailable when that cannot be told (`may_block` as above).
absl::Status CheckFollowedCapabilityPath(const std::string& path, bool may_block);

// The checks LoadPolicyFile makes on the open file's fstat result `st`, for
// a broker running as `euid`: a regular file, owned by root or `euid`, not
// writable by group or others, at most kMaxPolicyBytes. Exposed so that the
// rules can be tested for any owner (tests cannot always chown), and so a
// checker can report the same problems.
absl::Status CheckPolicyFileStat(absl::string_view path, const struct stat& st, uid_t euid);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_POLICY_FILE_H_

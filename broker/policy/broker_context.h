// BrokerContext: what the broker that is to enforce a policy provides, where
// a policy setting depends on it.
//
// Most of a policy stands on its own. A service's memoryMax and pidsMax do
// not: they are applied in a cgroup the broker makes in its `--cgroup DIR`,
// so a broker without one (or whose directory does not enable the
// controller) could not apply them. Such a policy is refused whole when it
// is loaded, at the limit's line and column, rather than failing each
// launch later (or, worse, running the service without its limit).
//
// The same goes for a service's rlimits above the broker's own hard limits
// (BrokerHardLimits).
//
// `capctl policy check` does not know the flags or the limits of the broker
// that will load the file: it leaves `cgroup` and `hard_limits` unset, and
// says what it did not check.
//
// A principal's `exe` is compared with the path the kernel reports for the
// client's executable, with every symlink resolved: an exe through a symlink
// (on Debian 12, /bin/foo: /bin is a link to usr/bin) would never match.
// The policy's text cannot tell; the files of the machine can, through
// `resolve_program`, which LoadPolicyFile sets (for capbrokerd and `capctl
// policy check` alike), so that such a policy is refused when it is loaded.
// The same goes for a file or directory capability's path without
// followSymlinks = true: the broker opens it refusing every symlink, so one
// through a symlink would fail every request. Only symlinks that root or
// the broker's user alone could have put there count: another user's link
// (in their own directory, say) is theirs to make at any time, and must not
// let them have the whole policy refused.
//
// A capability path with followSymlinks = true is checked too, through
// `check_followed_path`: the broker follows only links that no user but root
// or its own could have put in place or could change (util::SymlinkRule),
// so such a path that runs, now, through another user's link, or through a
// directory another user could change (where no link would be followed), is
// refused when the policy is loaded; a link made later is refused at the
// request. Here the path's own owners decide, not a stranger: a link or
// directory of another user's on a followed path is the policy's mistake.
#ifndef CAPBROKER_BROKER_POLICY_BROKER_CONTEXT_H_
#define CAPBROKER_BROKER_POLICY_BROKER_CONTEXT_H_

#include <sys/resource.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "broker/sandbox/settings.h"

namespace capbroker {

// The broker's hard resource limits (getrlimit's rlim_max; RLIM_INFINITY:
// none). A service's openFiles, addressSpace, processes and cpuSeconds are
// set as its soft and hard limit alike, and a hard limit above the broker's
// takes CAP_SYS_RESOURCE in the initial user namespace, which the service's
// child does not have: it is in a user namespace of its own (privateUsers),
// and sets RLIMIT_NOFILE after dropping its capabilities. Every start of
// such a service would fail with EPERM, so the policy is refused when it is
// loaded instead, at the limit. (A root broker whose service runs with
// privateUsers = off could raise the other three; the rule stays simple,
// no service limit above the broker's own, which its unit can raise.)
struct BrokerHardLimits {
  uint64_t open_files = RLIM_INFINITY;     // RLIMIT_NOFILE
  uint64_t address_space = RLIM_INFINITY;  // RLIMIT_AS, bytes
  uint64_t processes = RLIM_INFINITY;      // RLIMIT_NPROC
  uint64_t cpu_seconds = RLIM_INFINITY;    // RLIMIT_CPU
};

// The broker's effective uid and gid.
struct BrokerIds {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct BrokerContext {
  // The broker's cgroup directory and the controllers it enables for the
  // services' cgroups (path "" when the broker has none); nullopt when the
  // broker is not known, and then memoryMax and pidsMax are not checked.
  std::optional<sandbox::CgroupParent> cgroup;
  // The hard limits of the broker that loads the policy, read at start and
  // at every reload; nullopt when the broker is not known (capctl policy
  // check), and then the services' limits are not checked against them.
  std::optional<BrokerHardLimits> hard_limits;
  // Who the broker that loads the policy runs as; nullopt when not known
  // (capctl policy check), and then services' `user` and `group` are not
  // checked against it. Without CAP_SETUID (a broker that is not root) the
  // kernel lets it map only its own uid and gid into a service's user
  // namespace, so such a broker refuses any other `user` or `group` when it
  // loads the policy, rather than failing every start of the service.
  std::optional<BrokerIds> ids;
  // The path the kernel would report for the program (or file, or
  // directory) at `path`, every symlink resolved (see ResolveProgramPath);
  // kFailedPrecondition when `path` is a symlink to nothing; another error
  // when it cannot be told, among which a symlink another user could have
  // put on the path, and then the exe or capability path is accepted (a
  // rule that never matches denies; a request says why it fails). Unset:
  // neither is checked against the files of this machine (ParsePolicy does
  // no I/O).
  std::function<absl::StatusOr<std::string>(const std::string& path)> resolve_program;
  // For a file or directory capability's path with followSymlinks = true:
  // OK, or kFailedPrecondition naming the symlink or directory on `path`
  // that another user could change, and what to do (util::CheckFollowedPath),
  // which refuses the policy; any other error is what cannot be told, and
  // the path is accepted (a request says why it fails). Unset: not checked.
  std::function<absl::Status(const std::string& path)> check_followed_path;
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_BROKER_CONTEXT_H_

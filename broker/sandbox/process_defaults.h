// The service's process state that is neither signals, fds, rlimits, ids
// nor keyrings: what it would otherwise inherit from the broker.
//
// A broker's unit may set OOMScoreAdjust= (dbus-broker ships -900), Nice=,
// IOSchedulingClass= and UMask=; clone(2) copies each of them into the
// child, and execve(2) keeps them. A service starts instead with systemd's
// defaults: oom_score_adj 0, nice 0, no I/O scheduling class (the kernel
// derives one from the nice value), umask 022. CPU affinity is left as the
// broker's: CPUAffinity= is the administrator's choice for the whole unit.
#ifndef CAPBROKER_BROKER_SANDBOX_PROCESS_DEFAULTS_H_
#define CAPBROKER_BROKER_SANDBOX_PROCESS_DEFAULTS_H_

#include <sys/stat.h>
#include <sys/types.h>

#include "absl/status/status.h"

namespace capbroker::sandbox {

// The service's umask, as systemd's default UMask=: files it creates in a
// writable directory grant are readable by others, never writable. 077
// would keep them from the user who granted the directory (a root broker's
// services run as nobody); a service that wants private files sets its own.
inline constexpr mode_t kServiceUmask = 022;

// Sets oom_score_adj, the nice value and the I/O priority of the child
// `pid` (the broker's own child, not yet reaped, so the pid cannot be
// reused) back to 0. Called by the parent before it lets the child go: the
// child, created in a user namespace of its own, has no capability in the
// initial one, and lowering either value needs CAP_SYS_RESOURCE or
// CAP_SYS_NICE there. Raising to 0 needs nothing, so a negative value is
// always undone. A positive one that the broker is not allowed to lower
// (EACCES: a broker without root whose value was set by root, which also
// sets the floor) is left as it is: it makes the service only likelier to
// be killed, or slower, never the reverse. Any other failure is an error.
absl::Status ResetInheritedScheduling(pid_t pid);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_PROCESS_DEFAULTS_H_

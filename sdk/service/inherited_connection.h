// The service connection a client program inherits from
// `capctl connect SERVICE -- PROGRAM ARGS`: fd 3, announced by LISTEN_FDS=1
// and LISTEN_PID as systemd's socket activation does.
#ifndef CAPBROKER_SDK_SERVICE_INHERITED_CONNECTION_H_
#define CAPBROKER_SDK_SERVICE_INHERITED_CONNECTION_H_

#include <sys/types.h>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {

// The fd number the variables' values (null: unset) announce for process
// `pid`: 3. kInvalidArgument, naming the variable and how to run the
// program, when they announce anything but one fd for this process. Pure.
absl::StatusOr<int> ParseInheritedConnection(const char* listen_fds, const char* listen_pid,
                                             pid_t pid);

// Takes the announced fd, after checking that it is a SOCK_SEQPACKET socket,
// makes it close-on-exec, and removes the variables from the environment.
absl::StatusOr<UniqueFd> TakeInheritedConnection();

// The body of a client program's main(): takes the inherited connection and
// calls `run` with it. When there is none, says why on stderr (prefixed
// with `program`) and returns `failure_exit`.
int RunWithInheritedConnection(absl::string_view program, int failure_exit,
                               absl::FunctionRef<int(UniqueFd)> run);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_INHERITED_CONNECTION_H_

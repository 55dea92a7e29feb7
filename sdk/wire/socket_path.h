// Where the broker's socket is, when nobody says: shared by capbrokerd and
// clients so that both look in the same places, in the same order.
#ifndef CAPBROKER_SDK_WIRE_SOCKET_PATH_H_
#define CAPBROKER_SDK_WIRE_SOCKET_PATH_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace capbroker::wire {

// The system broker's socket (a broker run as root).
inline constexpr char kSystemSocketPath[] = "/run/capbroker/broker.sock";

// Where a broker listens: $CAPBROKER_SOCKET if set and non-empty, else
// $XDG_RUNTIME_DIR/capbroker/broker.sock (when XDG_RUNTIME_DIR is absolute),
// else, for root (`euid` 0), kSystemSocketPath. kNotFound when none applies.
// `getenv` is injectable for tests.
absl::StatusOr<std::string> DefaultSocketPath(
    unsigned euid, const std::function<const char*(const char*)>& getenv);

// The same with the process's own euid and environment.
absl::StatusOr<std::string> DefaultSocketPath();

// Where a client looks, in order; never empty. $CAPBROKER_SOCKET alone if
// set and non-empty (a socket named explicitly is never replaced by
// another). Otherwise the per-user socket
// $XDG_RUNTIME_DIR/capbroker/broker.sock (when XDG_RUNTIME_DIR is absolute),
// then kSystemSocketPath for every user, since a root broker serves all
// local users. A client moves on to the next path only when nothing exists
// at one: a socket there that refuses is a broker that is down, not absent.
std::vector<std::string> ClientSocketPaths(
    const std::function<const char*(const char*)>& getenv);

// The same with the process's own environment.
std::vector<std::string> ClientSocketPaths();

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_SOCKET_PATH_H_

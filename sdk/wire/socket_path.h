// Where the broker's socket is, when nobody says: shared by capbrokerd and
// clients so that both look in the same place.
#ifndef CAPBROKER_SDK_WIRE_SOCKET_PATH_H_
#define CAPBROKER_SDK_WIRE_SOCKET_PATH_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace capbroker::wire {

// The system broker's socket (a broker run as root).
inline constexpr char kSystemSocketPath[] = "/run/capbroker/broker.sock";

// $CAPBROKER_SOCKET if set and non-empty, else
// $XDG_RUNTIME_DIR/capbroker/broker.sock, else, for root (`euid` 0),
// kSystemSocketPath. kNotFound when none applies. `getenv` is injectable for
// tests.
absl::StatusOr<std::string> DefaultSocketPath(
    unsigned euid, const std::function<const char*(const char*)>& getenv);

// The same with the process's own euid and environment.
absl::StatusOr<std::string> DefaultSocketPath();

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_SOCKET_PATH_H_

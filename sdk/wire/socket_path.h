// Where the broker's socket is, when nobody says: shared by capbrokerd and
// clients so that both look in the same places, in the same order.
#ifndef CAPBROKER_SDK_WIRE_SOCKET_PATH_H_
#define CAPBROKER_SDK_WIRE_SOCKET_PATH_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace capbroker::wire {

// The system broker's socket (a broker run as root).
inline constexpr char kSystemSocketPath[] = "/run/capbroker/broker.sock";

// For root (`euid` 0): why $XDG_RUNTIME_DIR, absolute and set, is not
// root's and so not used ("XDG_RUNTIME_DIR /run/user/1000 is owned by uid
// 1000, not root"), or nullopt when it is used or not set (and for any
// other euid). `su` (not `su -`) and `sudo -E` keep the user's
// XDG_RUNTIME_DIR: a root broker would try to listen in the user's
// directory (which Listener::Bind refuses, as the user could replace its
// socket), and root's client would connect to a broker that user runs,
// which can hand root any fds it likes. A directory that cannot be stat'ed
// (missing) is not root's either, nor one others may write (/tmp, which
// containers often set for root), where any user could place a broker.
// Only the directory itself is read: the broker checks the rest of the
// path when it binds.
std::optional<std::string> ForeignRuntimeDir(
    unsigned euid, const std::function<const char*(const char*)>& getenv);

// The same with the process's own euid and environment.
std::optional<std::string> ForeignRuntimeDir();

// Where a broker listens: $CAPBROKER_SOCKET if set and non-empty, else
// $XDG_RUNTIME_DIR/capbroker/broker.sock (when XDG_RUNTIME_DIR is absolute
// and, for root, owned by root: see ForeignRuntimeDir), else, for root
// (`euid` 0), kSystemSocketPath. kNotFound when none applies. `getenv` is
// injectable for tests.
absl::StatusOr<std::string> DefaultSocketPath(
    unsigned euid, const std::function<const char*(const char*)>& getenv);

// The same with the process's own euid and environment.
absl::StatusOr<std::string> DefaultSocketPath();

// A place a client looks for the broker.
struct ClientSocket {
  std::string path;
  // Whether `path` was made from $XDG_RUNTIME_DIR. ForeignRuntimeDir reads
  // the directory once, and connect(2) resolves the path again later: a
  // user whose environment root keeps can point XDG_RUNTIME_DIR at a
  // symlink and swap it between the two to a directory of her own. So the
  // broker found there is checked once connected (CheckRuntimeDirBroker).
  // A socket the caller named ($CAPBROKER_SOCKET, --socket) is the
  // caller's choice, and kSystemSocketPath lies in root's /run.
  bool from_runtime_dir = false;
};

// Where a client looks, in order; never empty. $CAPBROKER_SOCKET alone if
// set and non-empty (a socket named explicitly is never replaced by
// another). Otherwise the per-user socket
// $XDG_RUNTIME_DIR/capbroker/broker.sock (when XDG_RUNTIME_DIR is absolute
// and, for root, owned by root: see ForeignRuntimeDir), then
// kSystemSocketPath for every user, since a root broker serves all local
// users. A client moves on to the next path only when nothing exists at
// one: a socket there that refuses is a broker that is down, not absent,
// and one held by someone else (CheckRuntimeDirBroker) an impostor.
std::vector<ClientSocket> ClientSocketPaths(
    unsigned euid, const std::function<const char*(const char*)>& getenv);

// The same with the process's own euid and environment.
std::vector<ClientSocket> ClientSocketPaths();

// Whether the process listening on `fd` (borrowed), a connection made
// through $XDG_RUNTIME_DIR to `path`, may be the broker of a client whose
// euid is `euid`: it must be that user's own or root's (as SO_PEERCRED
// has it: the euid of whoever called listen(2)). For root, root's alone.
// kFailedPrecondition otherwise, naming the path, the listener's uid and
// why: no other broker is tried, since an impostor at the path is no
// absent broker (a retry would meet the same one), and the caller should
// learn that someone is listening in its place.
absl::Status CheckRuntimeDirBroker(int fd, unsigned euid, const std::string& path);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_SOCKET_PATH_H_

// The broker's listening socket: made at a path, or inherited from systemd.
//
// Permissions are deliberate. A broker run as root serves every local user
// (the policy decides who gets what, as for the D-Bus system bus): its
// directory is 0755 and its socket 0666. A broker run by a user serves only
// that user: directory 0700, socket 0600. `socket_mode` overrides the
// socket's mode. The socket file is bound under umask 0177 and then
// chmod-ed, so it is never reachable more widely than intended.
//
// A socket file left by a broker that died is replaced; a live broker on the
// same path is never displaced; anything else at the path is left alone.
#ifndef CAPBROKER_BROKER_SERVER_LISTENER_H_
#define CAPBROKER_BROKER_SERVER_LISTENER_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

class Listener {
 public:
  // Binds and listens on `path`, creating its directory (one level) if
  // needed. kAlreadyExists when a broker already listens there;
  // kInvalidArgument for a path sun_path cannot hold; kNotFound when the
  // directory's parent does not exist.
  static absl::StatusOr<Listener> Bind(absl::string_view path,
                                       std::optional<mode_t> socket_mode);

  // The socket systemd passed (LISTEN_PID is us, LISTEN_FDS is 1, fd 3 is a
  // listening AF_UNIX SOCK_SEQPACKET socket), or nullopt when the process was
  // not socket-activated. Clears the LISTEN_* variables either way, so that
  // children never see them.
  static absl::StatusOr<std::optional<Listener>> FromSystemd();

  Listener(Listener&&) = default;
  Listener& operator=(Listener&&) = default;
  // Removes the socket file, if this listener made it and it is still the
  // same file.
  ~Listener();

  int fd() const { return fd_.get(); }
  // The path bound, empty for an inherited socket.
  const std::string& path() const { return path_; }

 private:
  Listener() = default;

  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_LISTENER_H_

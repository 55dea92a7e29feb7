// Service: the C++ API for a program the broker hosts.
//
//   absl::StatusOr<Service> service = Service::FromEnvironment();
//   absl::StatusOr<UniqueFd> db = service->TakeGrant("signatures");
//   service->Ready();
//   for (;;) {
//     absl::StatusOr<IncomingConnection> c = service->Accept();
//     if (!c.ok()) break;              // the broker is gone: exit
//     wire::Channel channel(std::move(c->fd));
//     ... channel.Receive() / channel.Send(message, fds) ...
//   }
//
// The broker starts a service with its grants at fds 3.. (LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES, as systemd's socket activation does) and
// its own broker connection in CAPBROKER_FD. On that connection the service
// is its own principal: broker() asks for capabilities the policy grants
// it, and Accept() takes the connections the broker made for clients,
// with who they are as the broker established it.
#ifndef CAPBROKER_SDK_SERVICE_SERVICE_H_
#define CAPBROKER_SDK_SERVICE_SERVICE_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"

namespace capbroker {

// What the environment says the broker passed: fd numbers and names.
struct ServiceLayout {
  int broker_fd = -1;
  std::vector<std::pair<std::string, int>> grants;  // name, fd (3, 4, ...)
};

// Reads the layout from the variables' values (null: unset) for the
// process `pid`. kInvalidArgument, naming the variable, when a value is
// malformed, LISTEN_PID is another process's, or names and count differ.
// Pure: touches no fd.
absl::StatusOr<ServiceLayout> ParseServiceLayout(const char* listen_fds,
                                                 const char* listen_pid,
                                                 const char* listen_fdnames,
                                                 const char* broker_fd, pid_t pid);

class Service {
 public:
  // Makes this process not dumpable (PR_SET_DUMPABLE 0: no other process
  // of its uid can open its /proc/PID/mem; no core dumps). Nor can it open
  // its own /proc/self/environ, auxv or io then (EACCES: use getenv and
  // getauxval); /proc/self/fd, status, maps and the like work. Ignores
  // SIGXFSZ, so that a write past the file size limit (RLIMIT_FSIZE, which
  // a service inherits from the broker) fails with EFBIG, for the one
  // request that made it, instead of killing the service for every client.
  // Takes the fds
  // the broker passed: each must be open; each becomes close-on-exec, and
  // the variables are removed from the environment, so none of it reaches
  // a program this one runs. Then says hello on the broker connection.
  static absl::StatusOr<Service> FromEnvironment();

  // A Service moves with its connection and grants. The one moved from
  // holds neither: TakeGrant, Ready and Accept on it fail with
  // kUnavailable "this Service was moved from".
  Service(Service&& other) noexcept;
  Service& operator=(Service&& other) noexcept;

  // Takes the grant named `name` (a capability name of the policy).
  // kNotFound, listing the names there are, when there is none (left).
  absl::StatusOr<UniqueFd> TakeGrant(absl::string_view name);

  // Tells the broker the service is ready; connects waiting for it are
  // answered from now on, once the broker has answered this (their
  // `incoming` events come after the reply).
  absl::Status Ready();

  // The next connection the broker made for a client. kUnavailable when
  // the broker closed this service's connection: time to exit.
  absl::StatusOr<IncomingConnection> Accept();

  // The broker connection, for requests as this service's own principal.
  Client& broker() { return broker_; }

 private:
  Service(Client broker, std::vector<std::pair<std::string, UniqueFd>> grants)
      : broker_(std::move(broker)), grants_(std::move(grants)) {}

  // kUnavailable once this Service was moved from; OK before.
  absl::Status CheckNotMovedFrom() const;

  Client broker_;
  std::vector<std::pair<std::string, UniqueFd>> grants_;
  bool moved_from_ = false;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_SERVICE_H_

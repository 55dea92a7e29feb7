// The service of service_bench.
//
//   bench_service exit    returns at once (what bwrap runs, as the baseline)
//   bench_service serve   ready; greets each connection with one datagram,
//                         then closes it
//   bench_service once    ready; greets one connection, waits for its hang-up,
//                         exits 0 (a cold start per connection)
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "sdk/service/service.h"

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (std::strcmp(mode, "exit") == 0) return 0;
  absl::StatusOr<capbroker::Service> service = capbroker::Service::FromEnvironment();
  if (!service.ok() || !service->Ready().ok()) return 70;
  for (;;) {
    absl::StatusOr<capbroker::IncomingConnection> c = service->Accept();
    if (!c.ok()) return 0;
    if (send(c->fd.get(), "hi", 2, MSG_NOSIGNAL) != 2) return 71;
    if (std::strcmp(mode, "once") == 0) {
      char byte;
      while (recv(c->fd.get(), &byte, 1, 0) > 0) {
      }
      return 0;
    }
  }
}

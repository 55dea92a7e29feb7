// ScannerHandler: the scanner protocol (scanner.capnp) on a ConnectionLoop,
// one per worker process (ForkingServer).
#ifndef CAPBROKER_SERVICES_SCANNER_SCANNER_HANDLER_H_
#define CAPBROKER_SERVICES_SCANNER_SCANNER_HANDLER_H_

#include <utility>

#include "absl/status/status.h"
#include "capnp/message.h"
#include "sdk/service/connection_loop.h"
#include "services/scanner/scanner.h"

namespace capbroker::scanner {

class ScannerHandler : public RequestHandler {
 public:
  explicit ScannerHandler(Scanner scanner) : scanner_(std::move(scanner)) {}

  // How the scanner's ConnectionLoop must run: a scan carries its file,
  // nothing else carries an fd.
  static ConnectionLoop::Options LoopOptions() { return {.max_request_fds = 1}; }

  // `scan` takes exactly one fd, `info` none; any other count, a file the
  // scanner refuses, or a request kind this version does not know gets an
  // error reply.
  absl::Status Handle(Exchange& exchange) override;
  // The error Reply a refused request or connection gets.
  bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) override;

 private:
  Scanner scanner_;
};

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_SCANNER_HANDLER_H_

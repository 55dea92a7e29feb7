// scanner: the hosted scanner service. Its one grant, "signatures" (or the
// NAME of --grant=NAME), is the signature database (a file capability, read
// access; see signatures.txt); its messages name the database so.
//
// Each client connection is served by a worker process of its own
// (ForkingServer): a client whose file stalls the scanner (FUSE) stalls
// only its own worker.
#include <memory>
#include <utility>
#include <vector>

#include "sdk/base/status_macros.h"
#include "sdk/service/serve.h"
#include "services/scanner/scanner.h"
#include "services/scanner/scanner_handler.h"
#include "services/scanner/signature_db.h"

namespace scanner = capbroker::scanner;

int main(int argc, char** argv) {
  capbroker::ServeOptions options;
  options.loop = scanner::ScannerHandler::LoopOptions();
  options.workers.emplace();
  return capbroker::ServeWithGrant(
      "scanner", scanner::kDefaultGrant, argc, argv,
      [](capbroker::UniqueFd db,
         absl::string_view grant) -> absl::StatusOr<std::unique_ptr<capbroker::RequestHandler>> {
        CB_ASSIGN_OR_RETURN(std::vector<scanner::Signature> signatures,
                            scanner::LoadSignatures(db.get(), grant));
        return std::make_unique<scanner::ScannerHandler>(scanner::Scanner(std::move(signatures)));
      },
      options);
}

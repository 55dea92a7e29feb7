// kvstore: the hosted key-value store. Its one grant, "data" (or the NAME
// of --grant=NAME), is the directory the store lives in (a directory
// capability, readWrite); its messages name the directory so.
#include <memory>
#include <utility>

#include "sdk/base/status_macros.h"
#include "sdk/service/serve.h"
#include "services/kvstore/kvstore_handler.h"
#include "services/kvstore/store.h"

namespace kvstore = capbroker::kvstore;

int main(int argc, char** argv) {
  capbroker::ServeOptions options;
  options.loop = kvstore::KvstoreHandler::LoopOptions();
  return capbroker::ServeWithGrant(
      "kvstore", kvstore::kDefaultGrant, argc, argv,
      [](capbroker::UniqueFd dir,
         absl::string_view grant) -> absl::StatusOr<std::unique_ptr<capbroker::RequestHandler>> {
        CB_ASSIGN_OR_RETURN(kvstore::Store store, kvstore::Store::Open(std::move(dir), grant));
        return std::make_unique<kvstore::KvstoreHandler>(std::move(store));
      },
      options);
}

// kvstore_client put KEY VALUE | get KEY | delete KEY | list: see kvstore_cli.h.
#include <iostream>
#include <string>
#include <vector>

#include "sdk/service/inherited_connection.h"
#include "services/kvstore/kvstore_cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return capbroker::RunWithInheritedConnection(
      "kvstore_client", capbroker::kvstore::kExitError, [&](capbroker::UniqueFd connection) {
        capbroker::kvstore::KvstoreClient kv(std::move(connection));
        return capbroker::kvstore::RunKvstoreCli(kv, args, std::cout, std::cerr);
      });
}

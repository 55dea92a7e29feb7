// The kvstore_client command:
//
//   capctl connect kvstore -- kvstore_client put KEY VALUE | get KEY | delete KEY | list
//
// `get` prints the value and a newline (the value's bytes as they are: it
// is data, for a pipe); `list` prints one key a line, with bytes that are
// not printable ASCII (and '\') as \xHH; an error message, the service's
// text, has such bytes as \xHH too (sdk/base/escape.h). Exit code: 0 done,
// 1 no such key (get, delete), 2 anything else (said on `err`), including
// output that `out` cannot take (flushed before the exit: "stdout: write
// failed").
#ifndef CAPBROKER_SERVICES_KVSTORE_KVSTORE_CLI_H_
#define CAPBROKER_SERVICES_KVSTORE_KVSTORE_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "services/kvstore/client.h"

namespace capbroker::kvstore {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNotFound = 1;
inline constexpr int kExitError = 2;

// Runs the command `args` (without the program name) with `kv`.
int RunKvstoreCli(KvstoreClient& kv, const std::vector<std::string>& args, std::ostream& out,
                  std::ostream& err);

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_KVSTORE_CLI_H_

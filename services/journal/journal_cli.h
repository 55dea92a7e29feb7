// The journal_client command:
//
//   capctl connect journal -- journal_client append TEXT...
//
// Appends one record, the TEXT words joined by spaces, and prints
// "appended record SEQ (run RUN)". Exit code 0 on success, 2 otherwise
// (said on `err`, the service's text with every byte outside printable
// ASCII as \xNN: sdk/base/escape.h), including when `out` cannot be
// written (flushed: "stdout: write failed", the record appended all the
// same).
#ifndef CAPBROKER_SERVICES_JOURNAL_JOURNAL_CLI_H_
#define CAPBROKER_SERVICES_JOURNAL_JOURNAL_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "services/journal/client.h"

namespace capbroker::journal {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 2;

// Runs the command `args` (without the program name) with `journal`.
int RunJournalCli(JournalClient& journal, const std::vector<std::string>& args,
                  std::ostream& out, std::ostream& err);

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_JOURNAL_CLI_H_

// journal_client append TEXT...: see journal_cli.h.
#include <iostream>
#include <string>
#include <vector>

#include "sdk/service/inherited_connection.h"
#include "services/journal/journal_cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return capbroker::RunWithInheritedConnection(
      "journal_client", capbroker::journal::kExitError, [&](capbroker::UniqueFd connection) {
        capbroker::journal::JournalClient journal(std::move(connection));
        return capbroker::journal::RunJournalCli(journal, args, std::cout, std::cerr);
      });
}

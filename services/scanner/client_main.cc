// scanner_client FILE...: see scanner_cli.h.
#include <iostream>
#include <string>
#include <vector>

#include "sdk/service/inherited_connection.h"
#include "services/scanner/scanner_cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> files(argv + 1, argv + argc);
  return capbroker::RunWithInheritedConnection(
      "scanner_client", capbroker::scanner::kExitError, [&](capbroker::UniqueFd connection) {
        capbroker::scanner::ScannerClient scanner(std::move(connection));
        return capbroker::scanner::RunScannerCli(scanner, files, std::cout, std::cerr);
      });
}

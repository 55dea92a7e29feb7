// The scanner_client command: scans files through a scanner connection.
//
//   capctl connect scanner -- scanner_client FILE...
//
// Prints "FILE: clean" or "FILE: infected (SIGNATURE)" per file on `out`,
// and "scanner_client: FILE: REASON" on `err` for a file that could not be
// scanned; once the connection is lost (kUnavailable), each file left is
// named so: "scanner_client: FILE: not scanned (connection to the scanner
// lost)". FILE is the name as given, SIGNATURE and REASON come from the
// service: none of them is trusted to be plain text, so each is shown as
// EscapedKeepingUtf8 (sdk/base/escape.h) shows it: UTF-8 that shows as
// text is kept, every other byte outside printable ASCII (a newline, ESC)
// is shown as \xNN. Exit code: 1 if any file is infected, else 2 if any
// could not be scanned, the usage is wrong, or writing the verdicts to
// `out` failed ("scanner_client: stdout: write failed" on `err`), else 0.
#ifndef CAPBROKER_SERVICES_SCANNER_SCANNER_CLI_H_
#define CAPBROKER_SERVICES_SCANNER_SCANNER_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "services/scanner/scanner_client.h"

namespace capbroker::scanner {

inline constexpr int kExitClean = 0;
inline constexpr int kExitInfected = 1;
inline constexpr int kExitError = 2;

// Scans `files` (paths this process opens) with `scanner`.
int RunScannerCli(ScannerClient& scanner, const std::vector<std::string>& files,
                  std::ostream& out, std::ostream& err);

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_SCANNER_CLI_H_

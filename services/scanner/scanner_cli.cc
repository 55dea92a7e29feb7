#include "services/scanner/scanner_cli.h"

#include <fcntl.h>

#include <cstring>

#include "sdk/base/escape.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::scanner {

int RunScannerCli(ScannerClient& scanner, const std::vector<std::string>& files,
                  std::ostream& out, std::ostream& err) {
  if (files.empty()) {
    err << "usage: scanner_client FILE...   (run as: capctl connect scanner -- "
           "scanner_client FILE...)\n";
    return kExitError;
  }
  bool infected = false;
  bool failed = false;
  bool connection_lost = false;
  for (const std::string& file : files) {
    // The file name as given may hold anything a file name can (a newline
    // that would forge a verdict line, an escape sequence); the service's
    // text too: a scanner compromised by what it scanned may say anything.
    const std::string name = EscapedKeepingUtf8(file);
    // Every file named gets a line, so that none passes unnoticed.
    if (connection_lost) {
      err << "scanner_client: " << name << ": not scanned (connection to the scanner lost)\n";
      continue;
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the scanner
    // refuses anything but a regular file anyway.
    UniqueFd fd(open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
      err << "scanner_client: " << name << ": " << std::strerror(errno) << "\n";
      failed = true;
      continue;
    }
    absl::StatusOr<Verdict> verdict = scanner.Scan(fd.get());
    if (!verdict.ok()) {
      err << "scanner_client: " << name << ": "
          << EscapedKeepingUtf8(verdict.status().message()) << "\n";
      failed = true;
      // Not the status code: an error reply may be kUnavailable too (a
      // read of the file that failed with EAGAIN, ENOTCONN...).
      connection_lost = !scanner.connected();
      continue;
    }
    if (verdict->signature.has_value()) {
      out << name << ": infected (" << EscapedKeepingUtf8(*verdict->signature) << ")\n";
      infected = true;
    } else {
      out << name << ": clean\n";
    }
  }
  // Verdicts that never reached stdout (a closed pipe, a full disk) must
  // not pass for a clean run.
  if (!out.flush()) {
    err << "scanner_client: stdout: write failed; verdicts were lost\n";
    failed = true;
  }
  if (infected) return kExitInfected;
  return failed ? kExitError : kExitClean;
}

}  // namespace capbroker::scanner

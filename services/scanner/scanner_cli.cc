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
  for (const std::string& file : files) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the scanner
    // refuses anything but a regular file anyway.
    UniqueFd fd(open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
      err << "scanner_client: " << file << ": " << std::strerror(errno) << "\n";
      failed = true;
      continue;
    }
    absl::StatusOr<Verdict> verdict = scanner.Scan(fd.get());
    if (!verdict.ok()) {
      // The service's text, like the signature's name below: a scanner
      // compromised by what it scanned may put escape sequences in it.
      err << "scanner_client: " << file << ": " << Escaped(verdict.status().message()) << "\n";
      failed = true;
      if (verdict.status().code() == absl::StatusCode::kUnavailable) break;
      continue;
    }
    if (verdict->signature.has_value()) {
      out << file << ": infected (" << Escaped(*verdict->signature) << ")\n";
      infected = true;
    } else {
      out << file << ": clean\n";
    }
  }
  if (infected) return kExitInfected;
  return failed ? kExitError : kExitClean;
}

}  // namespace capbroker::scanner

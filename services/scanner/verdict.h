// Verdict: what a scan found; shared by the scanner and its clients.
#ifndef CAPBROKER_SERVICES_SCANNER_VERDICT_H_
#define CAPBROKER_SERVICES_SCANNER_VERDICT_H_

#include <cstdint>
#include <optional>
#include <string>

namespace capbroker::scanner {

// What a scan found.
struct Verdict {
  std::optional<std::string> signature;  // the name of the one found, if any
  uint64_t bytes_scanned = 0;            // read: all, or to the end of the
                                         // chunk where the signature was found
};

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_VERDICT_H_

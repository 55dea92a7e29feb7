// Scanner: scans a file handed over as an fd for the database's signatures.
//
// The fd is not trusted to be what a client says: it must be a regular
// file, open for reading, no larger than max_file_bytes, and not on a FUSE
// filesystem (whose reads its server could stall forever, and with them the
// single-threaded service). The file is read with pread from offset 0 in
// chunks, so the client's file offset neither matters nor moves, and memory
// stays one chunk whatever the file's size.
#ifndef CAPBROKER_SERVICES_SCANNER_SCANNER_H_
#define CAPBROKER_SERVICES_SCANNER_SCANNER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/scanner/matcher.h"
#include "services/scanner/signature_db.h"
#include "services/scanner/verdict.h"

namespace capbroker::scanner {

class Scanner {
 public:
  struct Options {
    uint64_t max_file_bytes = uint64_t{256} << 20;
    // A multiple of 4096, so that reads from an O_DIRECT fd are aligned.
    size_t chunk_bytes = 1 << 20;
  };

  Scanner(std::vector<Signature> signatures, Options options);
  explicit Scanner(std::vector<Signature> signatures)
      : Scanner(std::move(signatures), Options()) {}

  // Scans the file at `fd` (borrowed). kFailedPrecondition when the fd is
  // not a readable regular file (or is on FUSE), kResourceExhausted when
  // the file is larger than max_file_bytes, other codes for I/O errors.
  absl::StatusOr<Verdict> Scan(int fd);

  size_t signature_count() const { return names_.size(); }
  uint64_t max_file_bytes() const { return options_.max_file_bytes; }

 private:
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };

  const Options options_;
  std::vector<std::string> names_;
  Matcher matcher_;
  std::unique_ptr<uint8_t, FreeDeleter> buffer_;  // chunk_bytes, page-aligned
};

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_SCANNER_H_

// Scanner: scans a file handed over as an fd for the database's signatures.
//
// The fd is not trusted to be what a client says: it must be a regular
// file, open for reading, no larger than max_file_bytes, and not on a FUSE
// filesystem. The file is read with pread from offset 0 in chunks, so the
// client's file offset neither matters nor moves, and memory stays one
// chunk whatever the file's size.
//
// The FUSE check is a courtesy, not protection against stalls: any call on
// a client's file can wait on a server the client controls. A file of an
// overlay whose lower layer is FUSE passes the check, and its fstat and
// pread wait for that server; fstatfs itself asks the server when the
// caller may use the mount; and close() of any fd on FUSE sends FLUSH and
// waits, uninterruptibly once the server has read it (SIGKILL does not end
// that wait). What contains such a stall is the process: the service runs
// Scan in a worker process per client connection (main.cc, ForkingServer),
// so a file that stalls stalls only its own client's connection.
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

// The scanner's signature database: its text format and its loading.
//
// One signature a line, `NAME:HEX` (signatures.txt documents the format and
// ships the EICAR test signature). Errors name the line and column of the
// first problem, and the whole database is refused.
#ifndef CAPBROKER_SERVICES_SCANNER_SIGNATURE_DB_H_
#define CAPBROKER_SERVICES_SCANNER_SIGNATURE_DB_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker::scanner {

inline constexpr size_t kMaxDatabaseBytes = 8 << 20;
inline constexpr size_t kMaxSignatures = 65536;
inline constexpr size_t kMaxSignatureNameBytes = 64;
// Short patterns match by chance in any large file.
inline constexpr size_t kMinSignatureBytes = 4;
inline constexpr size_t kMaxSignatureBytes = 1024;

struct Signature {
  std::string name;
  std::string bytes;
};

// Parses the text of a database. kInvalidArgument "LINE:COLUMN: what" at
// the first error (columns count bytes from 1).
absl::StatusOr<std::vector<Signature>> ParseSignatures(absl::string_view text);

// The name of the database's grant unless the service's command says
// --grant=NAME.
inline constexpr char kDefaultGrant[] = "signatures";

// Reads and parses the database at `fd` (borrowed: the grant named `grant`,
// which messages name it by: "sigdb: a directory, not a regular file",
// "sigdb:3:7: 'x' is not a hex digit"), which must be a regular file of at
// most kMaxDatabaseBytes holding at least one signature: a database without
// any (an empty file, only comments) is refused kInvalidArgument ("sigdb: no
// signatures ..."), since a scanner with it would report every file clean.
absl::StatusOr<std::vector<Signature>> LoadSignatures(int fd,
                                                      absl::string_view grant = kDefaultGrant);

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_SIGNATURE_DB_H_

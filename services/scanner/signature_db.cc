#include "services/scanner/signature_db.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/service/read_file.h"

namespace capbroker::scanner {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::Status ErrorAt(size_t line, size_t column, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(line, ":", column, ": ", what));
}

// Parses one non-blank, non-comment line; `start` is the column (0-based)
// where `text` begins in it.
absl::StatusOr<Signature> ParseLine(absl::string_view text, size_t line, size_t start) {
  size_t colon = text.find(':');
  size_t name_end = colon == absl::string_view::npos ? text.size() : colon;
  for (size_t i = 0; i < name_end; ++i) {
    if (!IsNameChar(text[i])) {
      return ErrorAt(line, start + i + 1,
                     absl::StrCat("'", absl::CHexEscape(text.substr(i, 1)),
                                  "' is not allowed in a signature name (A-Z a-z 0-9 . _ -)"));
    }
  }
  if (colon == absl::string_view::npos) {
    return ErrorAt(line, start + text.size() + 1, "expected ':' and the signature's hex bytes");
  }
  if (colon == 0) return ErrorAt(line, start + 1, "empty signature name");
  if (colon > kMaxSignatureNameBytes) {
    return ErrorAt(line, start + 1,
                   absl::StrCat("signature name longer than ", kMaxSignatureNameBytes, " bytes"));
  }
  Signature signature;
  signature.name = std::string(text.substr(0, colon));
  absl::string_view hex = text.substr(colon + 1);
  const size_t hex_column = start + colon + 2;
  for (size_t i = 0; i < hex.size(); ++i) {
    if (HexValue(hex[i]) < 0) {
      return ErrorAt(line, hex_column + i,
                     absl::StrCat("'", absl::CHexEscape(hex.substr(i, 1)), "' is not a hex digit"));
    }
  }
  if (hex.size() % 2 != 0) {
    return ErrorAt(line, hex_column + hex.size() - 1, "odd number of hex digits");
  }
  const size_t bytes = hex.size() / 2;
  if (bytes < kMinSignatureBytes || bytes > kMaxSignatureBytes) {
    return ErrorAt(line, hex_column,
                   absl::StrCat("a signature has ", kMinSignatureBytes, " to ",
                                kMaxSignatureBytes, " bytes; this one has ", bytes));
  }
  signature.bytes.resize(bytes);
  for (size_t i = 0; i < bytes; ++i) {
    signature.bytes[i] = static_cast<char>(HexValue(hex[2 * i]) * 16 + HexValue(hex[2 * i + 1]));
  }
  return signature;
}

}  // namespace

absl::StatusOr<std::vector<Signature>> ParseSignatures(absl::string_view text) {
  if (text.size() > kMaxDatabaseBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "signature database of ", text.size(), " bytes; at most ", kMaxDatabaseBytes));
  }
  std::vector<Signature> signatures;
  absl::flat_hash_set<std::string> names;
  size_t line = 0;
  while (!text.empty()) {
    ++line;
    size_t end = text.find('\n');
    absl::string_view raw = text.substr(0, end);
    text.remove_prefix(end == absl::string_view::npos ? text.size() : end + 1);
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    const size_t start = raw.find_first_not_of(" \t");
    if (start == absl::string_view::npos || raw[start] == '#') continue;
    absl::string_view content = raw.substr(start);
    content = content.substr(0, content.find_last_not_of(" \t") + 1);
    CB_ASSIGN_OR_RETURN(Signature signature, ParseLine(content, line, start));
    if (!names.insert(signature.name).second) {
      return ErrorAt(line, start + 1,
                     absl::StrCat("signature '", signature.name, "' is defined twice"));
    }
    if (signatures.size() == kMaxSignatures) {
      return ErrorAt(line, 1, absl::StrCat("more than ", kMaxSignatures, " signatures"));
    }
    signatures.push_back(std::move(signature));
  }
  return signatures;
}

absl::StatusOr<std::vector<Signature>> LoadSignatures(int fd, absl::string_view grant) {
  CB_ASSIGN_OR_RETURN(std::string text, ReadRegularFile(fd, kMaxDatabaseBytes, grant));
  absl::StatusOr<std::vector<Signature>> signatures = ParseSignatures(text);
  if (!signatures.ok()) {
    return absl::Status(signatures.status().code(),
                        absl::StrCat(grant, ":", signatures.status().message()));
  }
  // Fail closed: a scanner without signatures would answer `clean` for
  // every file, which a client cannot tell from a real verdict.
  if (signatures->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        grant, ": no signatures (every file would be reported clean); give the scanner a "
               "database with at least one NAME:HEX line"));
  }
  return signatures;
}

}  // namespace capbroker::scanner

// libFuzzer entry point for the scanner's signature database parser and
// its matcher, which reads every byte of every file a client hands over.
//
// Input: a signature database (signatures.txt's format), a NUL byte, then
// the bytes of a file to scan (the first of them also seeds how it is cut
// into chunks). Without a NUL, the input is a database alone.
//
// Beyond "does not crash", it checks: an error names a line and a column
// within the text, on one line; a database that loads holds only
// signatures within the format's limits, with unique names; and the
// matcher agrees with a naive search: it reports a match exactly when some
// signature occurs in the file, at the first position where one ends, with
// a signature that ends there, whether the file is fed at once, byte by
// byte, or in chunks of any size. A broken invariant aborts.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     services/scanner/{matcher,matcher_fuzz,signature_db}.cc
//     sdk/service/read_file.cc sdk/base/{syscall,unique_fd}.cc
// and run it with -max_len=65536. In `make test`, matcher_fuzz_test runs
// this function over inputs written in it and mutations of them.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "services/scanner/matcher.h"
#include "services/scanner/signature_db.h"
#include "tests/fixtures/fuzz_check.h"

namespace {

using namespace capbroker::scanner;  // NOLINT: a fuzz target's file-local helpers
using capbroker::testing::FuzzCheck;

void CheckError(const absl::Status& status, absl::string_view text) {
  FuzzCheck(status.code() == absl::StatusCode::kInvalidArgument ||
                status.code() == absl::StatusCode::kResourceExhausted,
            "a database is refused as invalid or too large");
  if (status.code() == absl::StatusCode::kResourceExhausted) return;
  FuzzCheck(status.message().find('\n') == absl::string_view::npos, "an error is one line");
  std::vector<absl::string_view> parts = absl::StrSplit(status.message(), absl::MaxSplits(':', 2));
  size_t line = 0;
  size_t column = 0;
  FuzzCheck(parts.size() == 3 && absl::SimpleAtoi(parts[0], &line) &&
                absl::SimpleAtoi(parts[1], &column),
            "an error starts with LINE:COLUMN");
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  FuzzCheck(line >= 1 && line <= lines && column >= 1, "an error's place is in the text");
  absl::string_view erring = std::vector<absl::string_view>(absl::StrSplit(text, '\n'))[line - 1];
  FuzzCheck(column <= erring.size() + 1, "an error's column is on its line");
}

void CheckSignatures(const std::vector<Signature>& signatures) {
  FuzzCheck(signatures.size() <= kMaxSignatures, "at most kMaxSignatures");
  absl::flat_hash_set<std::string> names;
  for (const Signature& s : signatures) {
    FuzzCheck(!s.name.empty() && s.name.size() <= kMaxSignatureNameBytes, "a name's length");
    FuzzCheck(s.bytes.size() >= kMinSignatureBytes && s.bytes.size() <= kMaxSignatureBytes,
              "a signature's length");
    FuzzCheck(names.insert(s.name).second, "names are unique");
  }
}

// The first position (count of bytes read) at which a signature ends in
// `file`, by brute force.
std::optional<size_t> FirstEnd(const std::vector<Signature>& signatures, absl::string_view file) {
  std::optional<size_t> first;
  for (const Signature& s : signatures) {
    size_t at = file.find(s.bytes);
    if (at != absl::string_view::npos && (!first || at + s.bytes.size() < *first)) {
      first = at + s.bytes.size();
    }
  }
  return first;
}

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

void CheckMatcher(const std::vector<Signature>& signatures, absl::string_view file) {
  const Matcher matcher(signatures);
  // Byte by byte: where the match is.
  Matcher::State state = Matcher::kStart;
  std::optional<size_t> found;
  size_t end = 0;
  while (end < file.size() && !found) found = matcher.Feed(state, Bytes(file.substr(end++, 1)));
  const std::optional<size_t> first = FirstEnd(signatures, file);
  FuzzCheck(found.has_value() == first.has_value(), "a match exactly when a signature occurs");
  if (!found) return;
  FuzzCheck(end == *first, "the match is where the first signature ends");
  FuzzCheck(*found < signatures.size(), "the match names a signature");
  const std::string& bytes = signatures[*found].bytes;
  FuzzCheck(end >= bytes.size() && file.substr(end - bytes.size(), bytes.size()) == bytes,
            "the signature named ends there");
  // At once, and in chunks of sizes the file seeds: the same signature.
  state = Matcher::kStart;
  FuzzCheck(matcher.Feed(state, Bytes(file)) == found, "at once, the same match");
  std::minstd_rand sizes(static_cast<uint8_t>(file[0]));
  state = Matcher::kStart;
  std::optional<size_t> chunked;
  for (size_t at = 0; at < file.size() && !chunked;) {
    const size_t n = std::min<size_t>(1 + sizes() % 64, file.size() - at);
    chunked = matcher.Feed(state, Bytes(file.substr(at, n)));
    at += n;
    FuzzCheck(chunked.has_value() == (at >= end), "in chunks, the match in the right one");
  }
  FuzzCheck(chunked == found, "in chunks, the same match");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const absl::string_view text = input.substr(0, nul);
  absl::StatusOr<std::vector<Signature>> signatures = ParseSignatures(text);
  if (!signatures.ok()) {
    CheckError(signatures.status(), text);
    return 0;
  }
  CheckSignatures(*signatures);
  if (nul != absl::string_view::npos) CheckMatcher(*signatures, input.substr(nul + 1));
  return 0;
}

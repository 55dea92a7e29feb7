// The journal's record format: one JSON object per line.
//
//   {"run":1763755262000000000,"seq":7,"time":"2026-11-21T20:01:02.345Z",
//    "principal":"ops","uid":1000,"gid":1000,"pid":4242,"text":"..."}
//
// (on one line). `run` and `seq` together name a record uniquely: the
// journal cannot read its log, so its sequence starts again at 1 each run,
// and `run` (the start time in ns) tells the runs apart. Strings are
// escaped as JSON requires; the text must be valid UTF-8 to begin with.
#ifndef CAPBROKER_SERVICES_JOURNAL_RECORD_H_
#define CAPBROKER_SERVICES_JOURNAL_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sdk/service/connection_loop.h"

namespace capbroker::journal {

inline constexpr size_t kMaxRecordTextBytes = 4096;

// kInvalidArgument unless `text` is valid UTF-8 (no overlong forms, no
// surrogates); kResourceExhausted when it is longer than
// kMaxRecordTextBytes.
absl::Status CheckRecordText(absl::string_view text);

// The line (with its '\n') for a record of `text` (checked) from `peer`.
std::string FormatRecord(uint64_t run, uint64_t seq, absl::Time time, const Peer& peer,
                         absl::string_view text);

// The longest line FormatRecord makes for what reaches the journal, its
// '\n' included: every number at its widest, the time in the year 9999,
// the principal at wire::kMaxNameBytes (the most a policy's name has, and
// what the service's connection accepts) and the text at
// kMaxRecordTextBytes, each byte of them at its longest escaped form (a
// control byte: "\u0001", six bytes). About 25 KiB.
size_t MaxRecordLineBytes();

// `text` as a JSON string literal, quotes included. Escaped: quotes,
// backslashes, the C0 controls and DEL, and what terminals or line readers
// act on (sdk/base/escape.h, ActingCharacter: the C1 controls U+0080 to
// U+009F, U+2028, U+2029 and the bidirectional controls); all else is
// copied as it is.
std::string JsonString(absl::string_view text);

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_RECORD_H_

// Decimal: the one reader of a number that a person or a supervisor writes
// into a command line or an environment variable (capbrokerd's flags,
// LISTEN_FDS and LISTEN_PID, CAPBROKER_FD, a service's own flags).
//
// absl::SimpleAtoi and strtoul take more than digits: blanks around the
// number, a '+', and for some types a "0x" prefix. So `--max-connections
// " 5"` would start a broker, and a LISTEN_FDS that systemd never writes
// would be read as if it had. Here a number is written in ASCII digits
// and nothing else, and one too large for 64 bits is refused, never
// wrapped.
//
// A leading 0 is refused too ("007"; "0" itself is a number): in C, in the
// shell's $((...)) and in a policy (mode = 0640) a leading 0 means octal,
// and capbrokerd's --socket-mode on the same command line is octal. A
// count or an fd written so is harmless, but what its writer meant is
// ambiguous, and a policy refuses an id with a leading 0 for the same
// reason (broker/policy/README.md). No one needs to write one.
//
// Text the kernel or this program wrote (/proc, a status payload, a codec's
// message) is read where it is, by its own rules.
#ifndef CAPBROKER_SDK_BASE_DECIMAL_H_
#define CAPBROKER_SDK_BASE_DECIMAL_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker {

// `text` read as a decimal number: one or more ASCII digits, without a
// sign, blanks or a leading 0 (but "0"), at most UINT64_MAX. nullopt for
// anything else.
std::optional<uint64_t> ParseDecimal(absl::string_view text);

// `text` read as ParseDecimal does, from `low` to `high`. kInvalidArgument
// otherwise, naming `name` (a flag or an environment variable) and showing
// `text` escaped and bounded (sdk/base/shown_text.h):
//   --max-connections wants a decimal number from 1 to 1048576 (digits
//   only, no leading 0), not '+5'
//   LISTEN_FDS wants 1, not '2'
absl::StatusOr<uint64_t> ParseDecimal(absl::string_view name, absl::string_view text,
                                      uint64_t low, uint64_t high);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_DECIMAL_H_

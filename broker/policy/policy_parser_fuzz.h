// The policy text a fuzz input of policy_parser_fuzz.cc stands for.
//
// libFuzzer runs with inputs of a few KiB (-max_len), and a policy reaches
// its value limit (kMaxPolicyValues, list_sizes.h) only in 130 KB or more: an
// input may therefore stand for a fragment repeated. One that begins with
// kRepeatMark is
//   kRepeatMark, a count (3 bytes, little-endian; fewer if the input ends
//   first), then head kRepeatMark fragment kRepeatMark tail
// (a missing kRepeatMark leaves what follows it empty) and stands for head,
// then fragment `count` times, then tail. The count is lowered so that the
// text is at most kMaxFuzzTextBytes long (unless head and tail are longer
// by themselves): a short input reaches the size limit (kMaxPolicyBytes)
// too, and the text is never much larger. Any other input is the text
// itself. A policy cannot begin with kRepeatMark, a control character, so
// no text is lost to the mode but the refusal of that first byte.
#ifndef CAPBROKER_BROKER_POLICY_POLICY_PARSER_FUZZ_H_
#define CAPBROKER_BROKER_POLICY_POLICY_PARSER_FUZZ_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "broker/policy/policy_parser.h"

namespace capbroker {

inline constexpr char kRepeatMark = '\x01';
inline constexpr size_t kMaxFuzzTextBytes = kMaxPolicyBytes + 1;

// The policy text `input` stands for (see above).
std::string PolicyFuzzText(absl::string_view input);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_POLICY_PARSER_FUZZ_H_

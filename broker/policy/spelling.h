// "Did you mean ...?" suggestions for misspelled names in a policy.
//
// An admin who writes `motdd`, `pth` or `reed` should be told the name they
// probably meant. Pure; cost is bounded by kMaxSpellingLength per comparison.
#ifndef CAPBROKER_BROKER_POLICY_SPELLING_H_
#define CAPBROKER_BROKER_POLICY_SPELLING_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace capbroker {

// Words longer than this are never compared: no name in a policy is longer
// (names are at most 64 bytes), and it keeps a hostile 1 MiB string from
// costing quadratic time.
inline constexpr size_t kMaxSpellingLength = 64;

// The candidate closest to `word` by case-insensitive edit distance, if one
// is close enough to be a plausible typo (at most 2 edits and fewer edits
// than the word has characters). Ties go to the earliest candidate.
std::optional<std::string> ClosestName(absl::string_view word,
                                       const std::vector<std::string>& candidates);

// "; did you mean 'x'?" when ClosestName finds x, else "". x is quoted as
// Quoted (excerpt.h) does: a candidate is text of the policy, and whatever
// it holds (a newline, an escape sequence) must not split the error's line
// or reach a terminal.
std::string DidYouMean(absl::string_view word,
                       const std::vector<std::string>& candidates);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SPELLING_H_

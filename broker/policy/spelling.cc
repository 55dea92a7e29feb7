#include "broker/policy/spelling.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/excerpt.h"

namespace capbroker {
namespace {

// Levenshtein distance, ignoring ASCII case.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      bool same = absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::optional<std::string> ClosestName(absl::string_view word,
                                       const std::vector<std::string>& candidates) {
  constexpr size_t kMaxEdits = 2;
  if (word.empty() || word.size() > kMaxSpellingLength) return std::nullopt;
  std::optional<std::string> best;
  size_t best_distance = kMaxEdits + 1;
  for (const std::string& candidate : candidates) {
    if (candidate.size() > kMaxSpellingLength || candidate == word) continue;
    size_t distance = EditDistance(word, candidate);
    if (distance < best_distance && distance < word.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string DidYouMean(absl::string_view word,
                       const std::vector<std::string>& candidates) {
  std::optional<std::string> best = ClosestName(word, candidates);
  return best.has_value() ? absl::StrCat("; did you mean ", Quoted(*best), "?") : "";
}

}  // namespace capbroker

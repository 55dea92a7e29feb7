// Matcher: finds any of many byte patterns in a stream (Aho-Corasick).
//
// Built once from the signature database; each scan keeps only a state
// word. The automaton's state carries everything a partial match needs, so
// a stream fed in chunks finds a pattern that straddles chunk boundaries
// without re-reading an overlap. Time is linear in the bytes scanned
// whatever the patterns; memory is linear in the patterns' total length.
#ifndef CAPBROKER_SERVICES_SCANNER_MATCHER_H_
#define CAPBROKER_SERVICES_SCANNER_MATCHER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "services/scanner/signature_db.h"

namespace capbroker::scanner {

class Matcher {
 public:
  // The position in the stream: the start of a scan.
  using State = uint32_t;
  static constexpr State kStart = 0;

  explicit Matcher(const std::vector<Signature>& signatures);

  // Feeds `bytes`, continuing from `state`, which is updated. Returns the
  // index (into the signatures given at construction) of a pattern that
  // ends within `bytes`, at the first position where one does.
  std::optional<size_t> Feed(State& state, absl::Span<const uint8_t> bytes) const;

  size_t pattern_count() const { return pattern_count_; }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;

  // The state after `state` reads `byte`.
  State Step(State state, uint8_t byte) const;
  // The child of `state` by `byte` in the trie, or kNone.
  uint32_t Child(State state, uint8_t byte) const;

  // The trie's edges, by state: edge_begin_[s] .. edge_begin_[s + 1] index
  // edge_byte_ (sorted) and edge_target_.
  std::vector<uint32_t> edge_begin_;
  std::vector<uint8_t> edge_byte_;
  std::vector<uint32_t> edge_target_;
  // The root's transitions, all 256 of them.
  std::vector<uint32_t> root_next_;
  std::vector<uint32_t> fail_;
  // A pattern that ends at this state or at one of its suffix states
  // (the nearest along the fail links), or kNone.
  std::vector<uint32_t> output_;
  size_t pattern_count_ = 0;
};

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_MATCHER_H_

#include "services/scanner/matcher.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace capbroker::scanner {

Matcher::Matcher(const std::vector<Signature>& signatures)
    : pattern_count_(signatures.size()) {
  // The trie, with edges per state while it is built.
  std::vector<std::vector<std::pair<uint8_t, uint32_t>>> children(1);
  std::vector<uint32_t> ends(1, kNone);
  for (size_t p = 0; p < signatures.size(); ++p) {
    uint32_t state = 0;
    for (char c : signatures[p].bytes) {
      const uint8_t byte = static_cast<uint8_t>(c);
      auto& edges = children[state];
      auto it = std::find_if(edges.begin(), edges.end(),
                             [&](const auto& e) { return e.first == byte; });
      if (it != edges.end()) {
        state = it->second;
        continue;
      }
      const uint32_t next = static_cast<uint32_t>(children.size());
      children[state].emplace_back(byte, next);
      children.emplace_back();
      ends.push_back(kNone);
      state = next;
    }
    if (ends[state] == kNone) ends[state] = static_cast<uint32_t>(p);
  }
  const size_t states = children.size();
  edge_begin_.assign(states + 1, 0);
  for (size_t s = 0; s < states; ++s) {
    std::sort(children[s].begin(), children[s].end());
    edge_begin_[s + 1] = edge_begin_[s] + static_cast<uint32_t>(children[s].size());
    for (const auto& [byte, target] : children[s]) {
      edge_byte_.push_back(byte);
      edge_target_.push_back(target);
    }
  }
  root_next_.assign(256, 0);
  for (const auto& [byte, target] : children[0]) root_next_[byte] = target;
  // Fail links and outputs, breadth first: a state's fail link is shorter.
  fail_.assign(states, 0);
  output_ = ends;
  std::deque<uint32_t> queue;
  for (const auto& [byte, target] : children[0]) queue.push_back(target);
  while (!queue.empty()) {
    const uint32_t s = queue.front();
    queue.pop_front();
    if (output_[s] == kNone) output_[s] = output_[fail_[s]];
    for (const auto& [byte, target] : children[s]) {
      fail_[target] = Step(fail_[s], byte);
      queue.push_back(target);
    }
  }
}

uint32_t Matcher::Child(State state, uint8_t byte) const {
  const uint8_t* begin = edge_byte_.data() + edge_begin_[state];
  const uint8_t* end = edge_byte_.data() + edge_begin_[state + 1];
  const uint8_t* it = std::lower_bound(begin, end, byte);
  if (it == end || *it != byte) return kNone;
  return edge_target_[it - edge_byte_.data()];
}

Matcher::State Matcher::Step(State state, uint8_t byte) const {
  while (state != 0) {
    const uint32_t next = Child(state, byte);
    if (next != kNone) return next;
    state = fail_[state];
  }
  return root_next_[byte];
}

std::optional<size_t> Matcher::Feed(State& state, absl::Span<const uint8_t> bytes) const {
  State s = state;
  for (uint8_t byte : bytes) {
    s = Step(s, byte);
    if (output_[s] != kNone) {
      state = s;
      return output_[s];
    }
  }
  state = s;
  return std::nullopt;
}

}  // namespace capbroker::scanner

// Diagnostics: the errors found in one policy text, as FILE:LINE:COL lines.
//
// Semantic errors are collected, not returned one at a time, so an admin
// fixes a policy in one pass; the count shown is capped so a hostile or
// badly broken file cannot produce a megabyte of messages.
#ifndef CAPBROKER_BROKER_POLICY_DIAGNOSTICS_H_
#define CAPBROKER_BROKER_POLICY_DIAGNOSTICS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "broker/policy/text_locator.h"
#include "sdk/base/escape.h"

namespace capbroker {

// At most this many errors are written out; the rest are only counted.
inline constexpr size_t kMaxReportedErrors = 20;

class Diagnostics {
 public:
  // `locator` must outlive this object. `filename` is shown escaped
  // (sdk/base/escape.h): a newline or an escape sequence in a file's name
  // would split an error line or reach the terminal. A name in any language
  // stays as it is (EscapedKeepingUtf8), for the editors that jump to
  // FILE:LINE:COL.
  Diagnostics(absl::string_view filename, const TextLocator& locator)
      : filename_(EscapedKeepingUtf8(filename)), locator_(locator) {}

  // Records `message` for the byte at `offset`.
  void AddAt(size_t offset, absl::string_view message);

  // Records `message` for the value at field path `path`, or for its
  // nearest ancestor in the text when the value was left out. Once full(),
  // only counts it: the path is not walked for an error nobody sees.
  void AddAtPath(absl::string_view path, absl::string_view message);

  // True once kMaxReportedErrors were recorded: callers may skip costly
  // work (such as spelling suggestions) for messages nobody will see.
  bool full() const { return lines_.size() >= kMaxReportedErrors; }

  size_t count() const { return count_; }

  // "FILE:LINE:COL: message" for `offset`.
  std::string Format(size_t offset, absl::string_view message) const;

  // OK when nothing was recorded; else kInvalidArgument with one line per
  // error ('\n'-joined, in text order) and a last line counting those left
  // out.
  absl::Status ToStatus() const;

 private:
  std::string filename_;
  const TextLocator& locator_;
  struct Line {
    size_t offset;
    std::string text;
  };
  std::vector<Line> lines_;
  size_t count_ = 0;
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_DIAGNOSTICS_H_

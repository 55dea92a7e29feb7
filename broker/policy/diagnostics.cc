#include "broker/policy/diagnostics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace capbroker {

std::string Diagnostics::Format(size_t offset, absl::string_view message) const {
  LineColumn position = locator_.LineColumnAt(offset);
  return absl::StrCat(filename_, ":", position.line, ":", position.column, ": ",
                      message);
}

void Diagnostics::AddAt(size_t offset, absl::string_view message) {
  ++count_;
  if (!full()) lines_.push_back(Line{offset, Format(offset, message)});
}

void Diagnostics::AddAtPath(absl::string_view path, absl::string_view message) {
  if (full()) {
    ++count_;  // not shown: not worth walking the path
    return;
  }
  AddAt(locator_.OffsetOf(path), message);
}

absl::Status Diagnostics::ToStatus() const {
  if (count_ == 0) return absl::OkStatus();
  std::vector<Line> sorted = lines_;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Line& a, const Line& b) { return a.offset < b.offset; });
  std::string text = absl::StrJoin(
      sorted, "\n", [](std::string* out, const Line& line) { out->append(line.text); });
  if (count_ > lines_.size()) {
    absl::StrAppend(&text, "\n", filename_, ": ", count_ - lines_.size(),
                    " more errors not shown");
  }
  return absl::InvalidArgumentError(text);
}

}  // namespace capbroker

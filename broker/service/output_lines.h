// OutputLines: cuts a service's stdout/stderr byte stream into log lines.
//
// A service writes what it likes; the broker's log gets whole lines, each
// prefixed with the service's name, each at most kMaxLineBytes (a longer
// line is cut, and the rest follows as further lines), with control
// characters other than tab shown as '?' so a service cannot forge log
// lines of its own or of the broker.
#ifndef CAPBROKER_BROKER_SERVICE_OUTPUT_LINES_H_
#define CAPBROKER_BROKER_SERVICE_OUTPUT_LINES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace capbroker::service {

inline constexpr size_t kMaxLineBytes = 4096;

class OutputLines {
 public:
  // Appends `bytes` and returns the lines they complete, without '\n'.
  std::vector<std::string> Add(absl::string_view bytes);

  // The unterminated rest, if any (at end of stream).
  std::vector<std::string> Finish();

 private:
  std::string partial_;
};

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_OUTPUT_LINES_H_

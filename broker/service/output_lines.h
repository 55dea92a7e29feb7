// OutputLines: cuts a service's stdout/stderr byte stream into log lines.
//
// A service writes what it likes; the broker's log gets whole lines, each
// prefixed with the service's name, each of at most kMaxLineBytes of
// output (a longer line is cut, and the rest follows as further lines),
// shown through EscapedKeepingUtf8 (sdk/base/escape.h): text in any
// language as it is, and every control character, ASCII (newline, escape)
// or C1 (U+009B, CSI), and every invalid UTF-8 byte as \xNN, so that a
// service cannot forge log lines of its own or of the broker, nor act on
// the terminal of whoever reads them. A character cut in two by a long
// line's cut shows as \xNN on both sides. Once escaped, a line is at most
// 4 x kMaxLineBytes.
//
// Lines are rationed (a LogLimiter, through the `allow` callback of Add):
// a service that floods its output must not keep the broker's only thread
// busy. A line the budget refuses is never built: once one line of a batch
// is refused, the rest of the batch are counted (memchr over the bytes), not
// copied, and their number goes to the next line allowed, or, when the
// stream ends first, to Finish.
#ifndef CAPBROKER_BROKER_SERVICE_OUTPUT_LINES_H_
#define CAPBROKER_BROKER_SERVICE_OUTPUT_LINES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

namespace capbroker::service {

inline constexpr size_t kMaxLineBytes = 4096;

// A line to log, and how many lines were suppressed just before it.
struct OutputLine {
  std::string text;
  uint64_t suppressed_before = 0;
};

// What is left when the stream ends.
struct OutputEnd {
  // Lines suppressed since the last line logged, that no line will report.
  uint64_t suppressed = 0;
  // The unterminated rest, escaped (see above); it came after them.
  std::optional<std::string> rest;
};

class OutputLines {
 public:
  // Whether the next completed line may be logged; when it may, sets its
  // argument to the number of lines it refused since the last one allowed.
  // LogLimiter::Allow at one moment, for example.
  using Allow = absl::FunctionRef<bool(uint64_t& suppressed)>;

  // Appends `bytes` and returns the lines they complete that `allow` lets
  // through, without '\n', escaped (see above). The batch is taken as written at one moment: once
  // `allow` refuses a line, it is not asked again for the rest of the batch,
  // which is suppressed too (so `allow` is called at most once per line, and
  // once in all when the budget is already spent). A line cut at
  // kMaxLineBytes counts as a line.
  std::vector<OutputLine> Add(absl::string_view bytes, Allow allow);

  // At end of stream: the lines suppressed and not yet reported, with
  // `refused` (those `allow` refused and has not reported: LogLimiter::
  // TakeSuppressed), and the unterminated rest, if any, not rationed. The
  // stream starts afresh after it.
  OutputEnd Finish(uint64_t refused);

 private:
  // The current line is complete: logged if allowed.
  void Complete(Allow allow, bool& refused, std::vector<OutputLine>& lines);

  // Takes in `bytes` once a line of the batch was refused: the lines they
  // complete are counted into suppressed_, not built.
  void Suppress(absl::string_view bytes);

  std::string partial_;  // as the service wrote it; escaped when complete
  // Lines suppressed without asking `allow` (it counts those it refused),
  // reported with the next line allowed.
  uint64_t suppressed_ = 0;
};

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_OUTPUT_LINES_H_

#include "sdk/service/rate_limited_log.h"

#include <time.h>

#include <cstdio>

namespace capbroker {

void RateLimitedLog::Line(absl::string_view line) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (now.tv_sec != second_) {
    if (suppressed_ > 0) {
      std::fprintf(stderr, "%llu log lines suppressed\n",
                   static_cast<unsigned long long>(suppressed_));
    }
    second_ = now.tv_sec;
    lines_ = 0;
    suppressed_ = 0;
  }
  if (lines_ >= lines_per_second_) {
    ++suppressed_;
    return;
  }
  ++lines_;
  std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
}

}  // namespace capbroker

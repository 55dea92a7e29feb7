#include "sdk/service/rate_limited_log.h"

#include <cstdio>

#include "absl/time/clock.h"

namespace capbroker {

void RateLimitedLog::Line(absl::string_view line) {
  uint64_t suppressed = 0;
  if (!limiter_.Allow(absl::Now(), suppressed)) return;
  if (suppressed > 0) {
    std::fprintf(stderr, "%llu log lines suppressed\n",
                 static_cast<unsigned long long>(suppressed));
  }
  std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
}

}  // namespace capbroker

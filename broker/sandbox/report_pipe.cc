#include "broker/sandbox/report_pipe.h"

#include <limits.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

// A record: kind (1 byte), status code or tag (int32), length (uint32),
// message.
constexpr size_t kHeaderSize = 1 + 4 + 4;
constexpr char kMissingKind = 'M';
constexpr char kFailureKind = 'F';
static_assert(kHeaderSize + kMaxReportMessage <= PIPE_BUF,
              "a record must be one atomic pipe write");

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

void ChildReporter::Write(char kind, int code, absl::string_view message) {
  if (message.size() > kMaxReportMessage) message = message.substr(0, kMaxReportMessage);
  char record[kHeaderSize + kMaxReportMessage];
  int32_t code32 = code;
  uint32_t length = message.size();
  record[0] = kind;
  std::memcpy(record + 1, &code32, 4);
  std::memcpy(record + 5, &length, 4);
  std::memcpy(record + kHeaderSize, message.data(), message.size());
  // Nothing to do if this fails: the parent then sees end of file and the
  // child's exit status.
  (void)RetryEintr([&] { return write(fd_, record, kHeaderSize + length); });
}

void ChildReporter::Missing(int tag, absl::string_view entry) {
  Write(kMissingKind, tag, entry);
}

void ChildReporter::Fail(const absl::Status& status) {
  Write(kFailureKind, static_cast<int>(status.code()), status.message());
  _exit(kChildFailedExitCode);
}

absl::StatusOr<ChildReport> ReadChildReport(int fd, int timeout_ms) {
  std::string bytes;
  const int64_t deadline = NowMs() + timeout_ms;
  char buffer[PIPE_BUF];
  while (true) {
    int64_t left = deadline - NowMs();
    if (left <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the child did not reach execve within ", timeout_ms, " ms"));
    }
    pollfd pfd{fd, POLLIN, 0};
    int ready = RetryEintr([&] { return poll(&pfd, 1, static_cast<int>(left)); });
    if (ready < 0) return ErrnoStatus(errno, "poll(report pipe)");
    if (ready == 0) continue;
    ssize_t n = RetryEintr([&] { return read(fd, buffer, sizeof buffer); });
    if (n < 0) return ErrnoStatus(errno, "read(report pipe)");
    if (n == 0) break;
    bytes.append(buffer, n);
    // A well-behaved child writes a handful of records.
    if (bytes.size() > 64 * PIPE_BUF) {
      return absl::InternalError("the child's report is too long");
    }
  }
  ChildReport report;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < kHeaderSize) {
      return absl::InternalError("truncated record on the report pipe");
    }
    char kind = bytes[pos];
    int32_t code;
    uint32_t length;
    std::memcpy(&code, bytes.data() + pos + 1, 4);
    std::memcpy(&length, bytes.data() + pos + 5, 4);
    pos += kHeaderSize;
    if (length > kMaxReportMessage || length > bytes.size() - pos) {
      return absl::InternalError("malformed record on the report pipe");
    }
    std::string message = bytes.substr(pos, length);
    pos += length;
    if (kind == kMissingKind) {
      report.missing.push_back({code, std::move(message)});
    } else if (kind == kFailureKind) {
      absl::StatusCode status_code = static_cast<absl::StatusCode>(code);
      if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
        status_code = absl::StatusCode::kInternal;
      }
      report.failure = absl::Status(status_code, message);
    } else {
      return absl::InternalError("unknown record on the report pipe");
    }
  }
  return report;
}

}  // namespace capbroker::sandbox

#include "broker/sandbox/report_pipe.h"

#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
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

// A well-behaved child writes a handful of records.
constexpr size_t kMaxReportBytes = 64 * PIPE_BUF;

// The records of a whole report.
absl::StatusOr<ChildReport> ParseReport(const std::string& bytes) {
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

absl::StatusOr<std::optional<ChildReport>> ChildReportReader::ReadAvailable(int fd) {
  char buffer[PIPE_BUF];
  while (true) {
    ssize_t n = RetryEintr([&] { return read(fd, buffer, sizeof buffer); });
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::nullopt;
    if (n < 0) return ErrnoStatus(errno, "read(report pipe)");
    if (n == 0) break;
    bytes_.append(buffer, n);
    if (bytes_.size() > kMaxReportBytes) {
      return absl::InternalError("the child's report is too long");
    }
  }
  CB_ASSIGN_OR_RETURN(ChildReport report, ParseReport(bytes_));
  return std::optional<ChildReport>(std::move(report));
}

}  // namespace capbroker::sandbox

// ScannerClient: the client library of the scanner service.
//
//   ScannerClient scanner(std::move(connection));  // e.g. from capctl connect
//   absl::StatusOr<Verdict> v = scanner.Scan(file.get());
//   if (v.ok() && v->signature) ... infected with *v->signature ...
#ifndef CAPBROKER_SERVICES_SCANNER_SCANNER_CLIENT_H_
#define CAPBROKER_SERVICES_SCANNER_SCANNER_CLIENT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/channel.h"
#include "services/scanner/verdict.h"

namespace capbroker::scanner {

struct ScannerInfo {
  uint32_t signatures = 0;
  uint64_t max_file_bytes = 0;
};

class ScannerClient {
 public:
  // Takes a connection to the scanner service. `timeout` bounds each call,
  // as CallService's does (sdk/service/call_service.h): past it the call
  // returns kDeadlineExceeded and the connection is closed, since a late
  // answer would be read as the next call's. absl::InfiniteDuration(), the
  // default: a call waits as long as the service takes; one that is not
  // positive makes every call kInvalidArgument.
  explicit ScannerClient(UniqueFd connection, absl::Duration timeout = absl::InfiniteDuration())
      : channel_(std::move(connection), wire::FdPolicy::kRefuse), timeout_(timeout) {}

  // Scans the file open at `fd` (borrowed: the service receives a copy).
  // The service's refusals keep their codes: kFailedPrecondition for an fd
  // that is not a readable regular file, kResourceExhausted for a file too
  // large; kUnavailable when the connection is gone (connected() is then
  // false), or when the service answered that code.
  absl::StatusOr<Verdict> Scan(int fd);

  absl::StatusOr<ScannerInfo> Info();

  // False once the connection is lost: the service closed it, or a call
  // timed out. Every call fails after that. A call's kUnavailable alone
  // does not say so: the service may have answered one, e.g. for a file
  // whose read failed with EAGAIN.
  bool connected() const { return channel_.fd() >= 0; }

 private:
  wire::Channel channel_;
  absl::Duration timeout_;  // of each call
};

}  // namespace capbroker::scanner

#endif  // CAPBROKER_SERVICES_SCANNER_SCANNER_CLIENT_H_

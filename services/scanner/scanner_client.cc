#include "services/scanner/scanner_client.h"

#include <string>

#include "capnp/message.h"
#include "sdk/service/call_service.h"
#include "services/scanner/scanner.capnp.h"

namespace capbroker::scanner {

absl::StatusOr<Verdict> ScannerClient::Scan(int fd) {
  capnp::MallocMessageBuilder request(32);
  request.initRoot<schema::Request>().setScan();
  Verdict verdict;
  CB_RETURN_IF_ERROR(CallService<schema::Reply>(
      channel_, request, {&fd, 1}, [&](schema::Reply::Reader reply) -> absl::Status {
        if (reply.isInfected()) {
          auto name = reply.getInfected();
          verdict.signature = std::string(name.cStr(), name.size());
        } else if (!reply.isClean()) {
          return absl::InternalError("the scanner did not answer the scan");
        }
        verdict.bytes_scanned = reply.getBytesScanned();
        return absl::OkStatus();
      }, timeout_));
  return verdict;
}

absl::StatusOr<ScannerInfo> ScannerClient::Info() {
  capnp::MallocMessageBuilder request(32);
  request.initRoot<schema::Request>().setInfo();
  ScannerInfo info;
  CB_RETURN_IF_ERROR(CallService<schema::Reply>(
      channel_, request, {}, [&](schema::Reply::Reader reply) -> absl::Status {
        if (!reply.isInfo()) return absl::InternalError("the scanner did not answer info");
        info.signatures = reply.getInfo().getSignatures();
        info.max_file_bytes = reply.getInfo().getMaxFileBytes();
        return absl::OkStatus();
      }, timeout_));
  return info;
}

}  // namespace capbroker::scanner

#include "services/scanner/scanner_handler.h"

#include "absl/strings/str_cat.h"
#include "sdk/service/error_reply.h"
#include "services/scanner/scanner.capnp.h"

namespace capbroker::scanner {
namespace {

absl::Status WrongFdCount(absl::string_view request, size_t expected, size_t got) {
  return absl::InvalidArgumentError(
      absl::StrCat(request, " takes ", expected, " fd", expected == 1 ? "" : "s",
                   " with the request; it came with ", got));
}

}  // namespace

absl::Status ScannerHandler::Handle(Exchange& x) {
  auto request = x.request.getRoot<schema::Request>();
  auto reply = x.reply.initRoot<schema::Reply>();
  const size_t fds = x.request_fds.size();
  switch (request.which()) {
    case schema::Request::SCAN: {
      if (fds != 1) {
        SetError(reply.initError(), WrongFdCount("scan", 1, fds));
        break;
      }
      absl::StatusOr<Verdict> verdict = scanner_.Scan(x.request_fds[0].get());
      if (!verdict.ok()) {
        SetError(reply.initError(), verdict.status());
        break;
      }
      if (verdict->signature.has_value()) {
        reply.setInfected(*verdict->signature);
      } else {
        reply.setClean();
      }
      reply.setBytesScanned(verdict->bytes_scanned);
      break;
    }
    case schema::Request::INFO: {
      if (fds != 0) {
        SetError(reply.initError(), WrongFdCount("info", 0, fds));
        break;
      }
      auto info = reply.initInfo();
      info.setSignatures(static_cast<uint32_t>(scanner_.signature_count()));
      info.setMaxFileBytes(scanner_.max_file_bytes());
      break;
    }
    default:
      SetError(reply.initError(),
               absl::InvalidArgumentError("unknown request (a newer protocol than this scanner)"));
      break;
  }
  return absl::OkStatus();
}

bool ScannerHandler::SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) {
  SetErrorReply<schema::Reply>(reply, refusal);
  return true;
}

}  // namespace capbroker::scanner

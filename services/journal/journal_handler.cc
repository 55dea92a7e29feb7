#include "services/journal/journal_handler.h"

#include "sdk/service/error_reply.h"
#include "services/journal/journal.capnp.h"

namespace capbroker::journal {

absl::Status JournalHandler::Handle(Exchange& x) {
  auto request = x.request.getRoot<schema::Request>();
  auto reply = x.reply.initRoot<schema::Reply>();
  absl::Status status;
  switch (request.which()) {
    case schema::Request::APPEND: {
      auto text = request.getAppend();
      absl::StatusOr<RecordId> id =
          journal_.Append(x.peer, absl::string_view(text.cStr(), text.size()));
      status = id.status();
      if (id.ok()) {
        auto appended = reply.initAppended();
        appended.setSeq(id->seq);
        appended.setRun(id->run);
      }
      break;
    }
    case schema::Request::INFO: {
      auto info = reply.initInfo();
      info.setRun(journal_.run());
      info.setRecords(journal_.records());
      break;
    }
    default:
      status = absl::InvalidArgumentError("unknown request (a newer protocol than this journal)");
      break;
  }
  if (!status.ok()) SetError(reply.initError(), status);
  return absl::OkStatus();
}

bool JournalHandler::SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) {
  SetErrorReply<schema::Reply>(reply, refusal);
  return true;
}

}  // namespace capbroker::journal

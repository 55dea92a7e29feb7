#include "services/journal/client.h"

#include "capnp/message.h"
#include "sdk/service/call_service.h"
#include "services/journal/journal.capnp.h"
#include "services/journal/record.h"

namespace capbroker::journal {

absl::StatusOr<RecordId> JournalClient::Append(absl::string_view text) {
  CB_RETURN_IF_ERROR(CheckRecordText(text));
  capnp::MallocMessageBuilder request;
  request.initRoot<schema::Request>().setAppend(capnp::Text::Reader(text.data(), text.size()));
  RecordId id;
  CB_RETURN_IF_ERROR(CallService<schema::Reply>(
      channel_, request, {}, [&](schema::Reply::Reader reply) -> absl::Status {
        if (!reply.isAppended()) return absl::InternalError("the journal did not answer appended");
        id.seq = reply.getAppended().getSeq();
        id.run = reply.getAppended().getRun();
        return absl::OkStatus();
      }, timeout_));
  return id;
}

}  // namespace capbroker::journal

#include "services/kvstore/kvstore_handler.h"

#include <set>
#include <string>

#include "sdk/service/data_view.h"
#include "sdk/service/error_reply.h"
#include "services/kvstore/kvstore.capnp.h"

namespace capbroker::kvstore {
namespace {

// Fills `reply` with the keys after `start_after`, as many as fit.
void FillList(const Store& store, absl::string_view start_after, schema::Keys::Builder reply) {
  const std::set<std::string>& all = store.keys();
  auto first = all.upper_bound(std::string(start_after));
  auto last = first;
  size_t bytes = 0;
  unsigned count = 0;
  while (last != all.end() && bytes + ListReplyBytes(last->size()) <= kMaxListReplyBytes) {
    bytes += ListReplyBytes(last->size());
    ++last;
    ++count;
  }
  auto keys = reply.initKeys(count);
  unsigned i = 0;
  for (auto it = first; it != last; ++it) keys.set(i++, AsData(*it));
  reply.setMore(last != all.end());
}

}  // namespace

absl::Status KvstoreHandler::Handle(Exchange& x) {
  auto request = x.request.getRoot<schema::Request>();
  auto reply = x.reply.initRoot<schema::Reply>();
  absl::Status status;
  switch (request.which()) {
    case schema::Request::PUT:
      status = store_.Put(DataView(request.getPut().getKey()),
                          DataView(request.getPut().getValue()));
      if (status.ok()) reply.setDone();
      break;
    case schema::Request::GET: {
      absl::StatusOr<std::string> value = store_.Get(DataView(request.getGet()));
      status = value.status();
      if (value.ok()) reply.setValue(AsData(*value));
      break;
    }
    case schema::Request::DELETE:
      status = store_.Delete(DataView(request.getDelete()));
      if (status.ok()) reply.setDone();
      break;
    case schema::Request::LIST:
      FillList(store_, DataView(request.getList().getStartAfter()), reply.initKeys());
      break;
    default:
      status = absl::InvalidArgumentError("unknown request (a newer protocol than this kvstore)");
      break;
  }
  if (!status.ok()) SetError(reply.initError(), status);
  return absl::OkStatus();
}

bool KvstoreHandler::SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) {
  SetErrorReply<schema::Reply>(reply, refusal);
  return true;
}

}  // namespace capbroker::kvstore

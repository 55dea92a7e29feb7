#include "services/kvstore/kvstore_handler.h"

#include <algorithm>
#include <string>
#include <vector>

#include "sdk/service/data_view.h"
#include "sdk/service/error_reply.h"
#include "services/kvstore/kvstore.capnp.h"

namespace capbroker::kvstore {
namespace {

// Fills `reply` with the keys after `start_after`, as many as fit.
absl::Status FillList(Store& store, absl::string_view start_after, schema::Keys::Builder reply) {
  absl::StatusOr<std::vector<std::string>> all = store.List();
  if (!all.ok()) return all.status();
  auto first = std::upper_bound(all->begin(), all->end(), start_after,
                                [](absl::string_view a, const std::string& b) { return a < b; });
  auto last = first;
  size_t bytes = 0;
  while (last != all->end() && bytes + last->size() + 8 <= kMaxListReplyBytes) {
    bytes += last->size() + 8;
    ++last;
  }
  auto keys = reply.initKeys(static_cast<unsigned>(last - first));
  for (unsigned i = 0; first + i != last; ++i) keys.set(i, AsData(first[i]));
  reply.setMore(last != all->end());
  return absl::OkStatus();
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
      status = FillList(store_, DataView(request.getList().getStartAfter()), reply.initKeys());
      break;
    default:
      status = absl::InvalidArgumentError("unknown request (a newer protocol than this kvstore)");
      break;
  }
  if (!status.ok()) SetError(reply.initError(), status);
  return absl::OkStatus();
}

absl::Status KvstoreHandler::Refuse(Exchange& x, const absl::Status& refusal) {
  SetErrorReply<schema::Reply>(x.reply, refusal);
  return absl::OkStatus();
}

}  // namespace capbroker::kvstore

#include "services/kvstore/client.h"

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "sdk/service/call_service.h"
#include "sdk/service/data_view.h"
#include "services/kvstore/key_name.h"
#include "services/kvstore/kvstore.capnp.h"
#include "services/kvstore/value_limit.h"

namespace capbroker::kvstore {
namespace {

absl::Status ExpectDone(schema::Reply::Reader reply) {
  if (!reply.isDone()) return absl::InternalError("the kvstore did not answer done");
  return absl::OkStatus();
}

}  // namespace

absl::Status KvstoreClient::Put(absl::string_view key, absl::string_view value) {
  CB_RETURN_IF_ERROR(CheckKey(key));
  CB_RETURN_IF_ERROR(CheckValue(value));
  capnp::MallocMessageBuilder request;
  auto put = request.initRoot<schema::Request>().initPut();
  put.setKey(AsData(key));
  put.setValue(AsData(value));
  return CallService<schema::Reply>(channel_, request, {}, ExpectDone, timeout_);
}

absl::StatusOr<std::string> KvstoreClient::Get(absl::string_view key) {
  CB_RETURN_IF_ERROR(CheckKey(key));
  capnp::MallocMessageBuilder request;
  request.initRoot<schema::Request>().setGet(AsData(key));
  std::string value;
  CB_RETURN_IF_ERROR(CallService<schema::Reply>(
      channel_, request, {}, [&](schema::Reply::Reader reply) -> absl::Status {
        if (!reply.isValue()) return absl::InternalError("the kvstore did not answer a value");
        value = std::string(DataView(reply.getValue()));
        return absl::OkStatus();
      }, timeout_));
  return value;
}

absl::Status KvstoreClient::Delete(absl::string_view key) {
  CB_RETURN_IF_ERROR(CheckKey(key));
  capnp::MallocMessageBuilder request;
  request.initRoot<schema::Request>().setDelete(AsData(key));
  return CallService<schema::Reply>(channel_, request, {}, ExpectDone, timeout_);
}

absl::StatusOr<std::vector<std::string>> KvstoreClient::List() {
  std::vector<std::string> keys;
  for (bool more = true; more;) {
    capnp::MallocMessageBuilder request;
    auto list = request.initRoot<schema::Request>().initList();
    if (!keys.empty()) list.setStartAfter(AsData(keys.back()));
    CB_RETURN_IF_ERROR(CallService<schema::Reply>(
        channel_, request, {}, [&](schema::Reply::Reader reply) -> absl::Status {
          if (!reply.isKeys()) return absl::InternalError("the kvstore did not answer keys");
          // Each key must come strictly after the one before it, and a
          // page's first after its startAfter (the last key so far; "",
          // before which no key is, on the first page): a service that
          // repeated keys could otherwise keep this loop asking forever.
          for (auto key : reply.getKeys().getKeys()) {
            const absl::string_view k = DataView(key);
            const absl::string_view previous =
                keys.empty() ? absl::string_view() : absl::string_view(keys.back());
            if (k <= previous) {
              return absl::InternalError(
                  "the kvstore answered keys out of order, repeated or empty: not a list");
            }
            // Bounds a service that goes on answering ever-greater keys.
            if (k.size() > kMaxKeyBytes || keys.size() >= kMaxKeys) {
              return absl::InternalError(absl::StrCat(
                  "the kvstore answered a key of more than ", kMaxKeyBytes,
                  " bytes or more than ", kMaxKeys, " keys: not a list"));
            }
            keys.emplace_back(k);
          }
          more = reply.getKeys().getMore();
          // A reply that says "more" must make progress, or this loops.
          if (more && reply.getKeys().getKeys().size() == 0) {
            return absl::InternalError("the kvstore answered an empty page with more to come");
          }
          return absl::OkStatus();
        }, timeout_));
  }
  return keys;
}

}  // namespace capbroker::kvstore

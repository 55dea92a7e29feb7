#include "services/kvstore/client.h"

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "sdk/base/syscall.h"
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

// List's kDeadlineExceeded, which names List's whole timeout, not the time
// left for the page that was under way (`page`, CallService's message, or
// "" when the time ran out between pages, nothing asked).
absl::Status ListTooSlow(absl::Duration timeout, size_t keys, absl::string_view page) {
  return absl::DeadlineExceededError(absl::StrCat(
      "the kvstore did not answer every page of the list within ", absl::FormatDuration(timeout),
      " (", keys, " keys came)", page.empty() ? "" : ": ", page));
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
  // One deadline for the whole List, not one a page: a service answering
  // one key a page, each just in time, would otherwise hold it for up to
  // kMaxKeys timeouts.
  const absl::Duration deadline = DeadlineAfter(timeout_);
  for (bool more = true, first = true; more; first = false) {
    // The first page gets timeout_ itself, so that CallService judges it
    // (kInvalidArgument when not positive) as it does every call's.
    const absl::Duration left = first ? timeout_ : deadline - MonotonicNow();
    if (left <= absl::ZeroDuration()) return ListTooSlow(timeout_, keys.size(), "");
    capnp::MallocMessageBuilder request;
    auto list = request.initRoot<schema::Request>().initList();
    if (!keys.empty()) list.setStartAfter(AsData(keys.back()));
    absl::Status page = CallService<schema::Reply>(
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
        }, left);
    if (page.code() == absl::StatusCode::kDeadlineExceeded) {
      return ListTooSlow(timeout_, keys.size(), page.message());
    }
    CB_RETURN_IF_ERROR(page);
  }
  return keys;
}

}  // namespace capbroker::kvstore

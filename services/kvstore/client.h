// KvstoreClient: the client library of the kvstore service.
//
//   KvstoreClient kv(std::move(connection));   // e.g. from capctl connect
//   CB_RETURN_IF_ERROR(kv.Put("greeting", "hello"));
//   absl::StatusOr<std::string> v = kv.Get("greeting");
//
// Keys and values are checked here as the store checks them (CheckKey,
// CheckValue) before anything is sent, so a bad one is told the rule.
#ifndef CAPBROKER_SERVICES_KVSTORE_CLIENT_H_
#define CAPBROKER_SERVICES_KVSTORE_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/channel.h"

namespace capbroker::kvstore {

class KvstoreClient {
 public:
  // Takes a connection to the kvstore service. `timeout` bounds each call,
  // as CallService's does (sdk/service/call_service.h): past it the call
  // returns kDeadlineExceeded and the connection is closed, since a late
  // answer would be read as the next call's. absl::InfiniteDuration(), the
  // default: a call waits as long as the service takes; one that is not
  // positive makes every call kInvalidArgument.
  explicit KvstoreClient(UniqueFd connection, absl::Duration timeout = absl::InfiniteDuration())
      : channel_(std::move(connection), wire::FdPolicy::kRefuse), timeout_(timeout) {}

  // OK once the value is on disk.
  absl::Status Put(absl::string_view key, absl::string_view value);
  // kNotFound when the key has no value.
  absl::StatusOr<std::string> Get(absl::string_view key);
  // kNotFound when the key has no value.
  absl::Status Delete(absl::string_view key);
  // Every key, in bytewise order (as many requests as it takes). kInternal
  // when the service answers what no store holds: keys out of order, longer
  // than kMaxKeyBytes, or more than kMaxKeys of them. The timeout bounds
  // the whole List, all its pages together: kDeadlineExceeded once it is
  // spent (the connection closed if a page was under way, as above).
  absl::StatusOr<std::vector<std::string>> List();

 private:
  wire::Channel channel_;
  absl::Duration timeout_;  // of each call (List's: of all its pages)
};

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_CLIENT_H_

// JournalClient: the client library of the journal service.
//
//   JournalClient journal(std::move(connection));   // e.g. from capctl connect
//   absl::StatusOr<RecordId> id = journal.Append("backup finished");
//
// A record is checked here as the journal checks it (CheckRecordText)
// before anything is sent, so a bad one is told the rule.
#ifndef CAPBROKER_SERVICES_JOURNAL_CLIENT_H_
#define CAPBROKER_SERVICES_JOURNAL_CLIENT_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/channel.h"
#include "services/journal/record_id.h"

namespace capbroker::journal {

class JournalClient {
 public:
  // Takes a connection to the journal service. `timeout` bounds each call,
  // as CallService's does (sdk/service/call_service.h): past it the call
  // returns kDeadlineExceeded and the connection is closed, since a late
  // answer would be read as the next call's. absl::InfiniteDuration(), the
  // default: a call waits as long as the service takes; one that is not
  // positive makes every call kInvalidArgument.
  explicit JournalClient(UniqueFd connection, absl::Duration timeout = absl::InfiniteDuration())
      : channel_(std::move(connection), wire::FdPolicy::kRefuse), timeout_(timeout) {}

  // Appends one record; OK once it is on disk.
  absl::StatusOr<RecordId> Append(absl::string_view text);

 private:
  wire::Channel channel_;
  absl::Duration timeout_;  // of each call
};

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_CLIENT_H_

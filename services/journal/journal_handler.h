// JournalHandler: the journal protocol (journal.capnp) on a ConnectionLoop.
// A record carries the peer the broker named for the connection.
#ifndef CAPBROKER_SERVICES_JOURNAL_JOURNAL_HANDLER_H_
#define CAPBROKER_SERVICES_JOURNAL_JOURNAL_HANDLER_H_

#include <utility>

#include "sdk/service/connection_loop.h"
#include "services/journal/journal.h"

namespace capbroker::journal {

class JournalHandler : public RequestHandler {
 public:
  explicit JournalHandler(Journal journal) : journal_(std::move(journal)) {}

  // How the journal's ConnectionLoop must run: its requests carry no fds.
  static ConnectionLoop::Options LoopOptions() { return {.max_request_fds = 0}; }

  // Bad records, records the log has no room for, and request kinds this
  // version does not know get an error reply.
  absl::Status Handle(Exchange& exchange) override;
  bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) override;

 private:
  Journal journal_;
};

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_JOURNAL_HANDLER_H_

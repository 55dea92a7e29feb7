// journal: the hosted append-only journal. Its one grant, "log", is the log
// file (a file capability with access = append).
#include <memory>
#include <utility>

#include "sdk/base/status_macros.h"
#include "sdk/service/serve.h"
#include "services/journal/journal.h"
#include "services/journal/journal_handler.h"

namespace journal = capbroker::journal;

int main(int argc, char** argv) {
  return capbroker::ServeWithGrant(
      "journal", "log", argc, argv,
      [](capbroker::UniqueFd log) -> absl::StatusOr<std::unique_ptr<capbroker::RequestHandler>> {
        CB_ASSIGN_OR_RETURN(journal::Journal j, journal::Journal::Open(std::move(log)));
        return std::make_unique<journal::JournalHandler>(std::move(j));
      },
      capbroker::ServeOptions{journal::JournalHandler::LoopOptions(), {}});
}

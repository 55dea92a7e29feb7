// journal: the hosted append-only journal. Its one grant, "log" (or the
// NAME of --grant=NAME), is the log file (a file capability with access =
// append); its messages name the log so.
//
//   journal [--grant=NAME] [--max-log-bytes=BYTES]
//
// --max-log-bytes: the log's size limit (default 1 GiB, at least
// LeastMaxLogBytes(), about 25 KiB: one record of the largest size);
// appends that would pass it are refused (journal.h).
#include <cstdint>
#include <memory>
#include <utility>

#include "sdk/base/decimal.h"
#include "sdk/base/status_macros.h"
#include "sdk/service/serve.h"
#include "services/journal/journal.h"
#include "services/journal/journal_handler.h"

namespace journal = capbroker::journal;

int main(int argc, char** argv) {
  journal::Journal::Options journal_options;
  capbroker::ServeOptions options;
  options.loop = journal::JournalHandler::LoopOptions();
  options.flags.push_back(
      {"max-log-bytes", "BYTES", [&](absl::string_view value) -> absl::Status {
         CB_ASSIGN_OR_RETURN(journal_options.max_log_bytes,
                             capbroker::ParseDecimal("--max-log-bytes", value,
                                                     journal::LeastMaxLogBytes(), UINT64_MAX));
         return absl::OkStatus();
       }});
  return capbroker::ServeWithGrant(
      "journal", journal::kDefaultGrant, argc, argv,
      [&](capbroker::UniqueFd log,
          absl::string_view grant) -> absl::StatusOr<std::unique_ptr<capbroker::RequestHandler>> {
        CB_ASSIGN_OR_RETURN(journal::Journal j,
                            journal::Journal::Open(std::move(log), grant, journal_options));
        return std::make_unique<journal::JournalHandler>(std::move(j));
      },
      options);
}

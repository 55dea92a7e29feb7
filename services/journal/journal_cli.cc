#include "services/journal/journal_cli.h"

#include "absl/strings/str_join.h"
#include "sdk/base/escape.h"

namespace capbroker::journal {

int RunJournalCli(JournalClient& journal, const std::vector<std::string>& args,
                  std::ostream& out, std::ostream& err) {
  if (args.size() < 2 || args[0] != "append") {
    err << "usage: journal_client append TEXT...\n"
           "  (run as: capctl connect journal -- journal_client append ...)\n";
    return kExitError;
  }
  const std::string text = absl::StrJoin(args.begin() + 1, args.end(), " ");
  absl::StatusOr<RecordId> id = journal.Append(text);
  if (!id.ok()) {
    // The service's text: escaped, as a compromised service may put escape
    // sequences in it.
    err << "journal_client: " << Escaped(id.status().message()) << "\n";
    return kExitError;
  }
  out << "appended record " << id->seq << " (run " << id->run << ")\n";
  // The flush is where a buffered stdout (a full disk) shows that the
  // output was lost; the record is in the log all the same.
  if (out.flush()) return kExitOk;
  err << "journal_client: stdout: write failed (record " << id->seq << " of run " << id->run
      << " was appended)\n";
  return kExitError;
}

}  // namespace capbroker::journal

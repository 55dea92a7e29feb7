#include "services/kvstore/kvstore_cli.h"

#include "absl/strings/escaping.h"
#include "sdk/base/escape.h"

namespace capbroker::kvstore {
namespace {

constexpr char kUsage[] =
    "usage: kvstore_client put KEY VALUE | get KEY | delete KEY | list\n"
    "  (run as: capctl connect kvstore -- kvstore_client ...)\n";

std::string Printable(const std::string& key) {
  std::string out;
  for (unsigned char c : key) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x" + absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(&c), 1));
    }
  }
  return out;
}

// The exit code for `status`, said on `err` unless OK. A command that
// succeeded but whose output `out` cannot deliver (stdout a full disk)
// failed: the flush is where a buffered stdout shows it.
int Report(absl::Status status, std::ostream& out, std::ostream& err) {
  if (status.ok() && !out.flush()) status = absl::UnavailableError("stdout: write failed");
  if (status.ok()) return kExitOk;
  // The message is the service's (or quotes it): escaped, as a compromised
  // service may put escape sequences in it.
  err << "kvstore_client: " << Escaped(status.message()) << "\n";
  return status.code() == absl::StatusCode::kNotFound ? kExitNotFound : kExitError;
}

}  // namespace

int RunKvstoreCli(KvstoreClient& kv, const std::vector<std::string>& args, std::ostream& out,
                  std::ostream& err) {
  const std::string command = args.empty() ? "" : args[0];
  const size_t operands = args.empty() ? 0 : args.size() - 1;
  if (command == "put" && operands == 2) return Report(kv.Put(args[1], args[2]), out, err);
  if (command == "delete" && operands == 1) return Report(kv.Delete(args[1]), out, err);
  if (command == "get" && operands == 1) {
    absl::StatusOr<std::string> value = kv.Get(args[1]);
    if (value.ok()) out << *value << "\n";
    return Report(value.status(), out, err);
  }
  if (command == "list" && operands == 0) {
    absl::StatusOr<std::vector<std::string>> keys = kv.List();
    if (keys.ok()) {
      for (const std::string& key : *keys) out << Printable(key) << "\n";
    }
    return Report(keys.status(), out, err);
  }
  err << kUsage;
  return kExitError;
}

}  // namespace capbroker::kvstore

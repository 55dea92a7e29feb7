// capctl's usage text, kept in one table of commands: `capctl help` prints
// all of it, `capctl COMMAND --help` and `capctl help COMMAND` the entries
// of COMMAND alone.
#ifndef CAPBROKER_SDK_CAPCTL_USAGE_H_
#define CAPBROKER_SDK_CAPCTL_USAGE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace capbroker {

// Whether `arg` asks for help: "--help" or "-h".
bool IsHelpFlag(absl::string_view arg);

// The whole usage text: every command, where the socket is looked for, the
// exit codes.
std::string FullUsage();

// The usage of `command` ("request", "policy check"), or of every command
// under it ("policy": policy check and policy init); empty for a command
// the table does not have.
std::string UsageOf(absl::string_view command);

// Every command in the table, as UsageOf takes them, in order.
std::vector<std::string> CommandNames();

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CAPCTL_USAGE_H_

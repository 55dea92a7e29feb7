// RunCapctl: the capctl command line, as a library so tests can run it.
//
//   capctl [--socket PATH] [--timeout SECONDS] COMMAND ARGS...
//
// The commands and their usage are in usage.cc's table (`capctl help`).
// `--help` or `-h` as the first argument after a command prints that
// command's usage on `out` and exits 0, as `capctl help COMMAND` does (a
// COMMAND the table does not have is a usage error). Anywhere else it is
// read as any other argument: an unknown option, or, after exec's or
// connect's "--", an argument of the program run.
//
// Each option may be given once; a second is a usage error naming it
// ("capctl: request: --access given twice"). --socket's and --timeout's
// value, when it is the next argument, must not start with "--" (a
// forgotten value would take the next option): a socket path that does is
// written --socket=PATH.
//
// Exit codes (kExit*): 0 ok, 2 usage, 3 permission denied, 4 not found,
// 5 broker unavailable (or it did not answer within --timeout), 1 anything
// else (a failed write to stdout too); `policy check`: 1 for any rejected
// file, a missing one included; `exec` and `connect` return 127 when the
// command cannot be run. Every failure writes exactly one line "capctl: <why>" to
// `err`, <why> starting with the command's name when it concerns the
// command as a whole ("capctl: list: no broker socket at ..."), what it
// quotes bounded as sdk/base/shown_text.h says (a usage error adds the
// command's usage after it, or the whole text when the command is missing
// or unknown); `policy check` of a file whose text is wrong writes its
// "FILE:LINE:COL: message" lines to `err` first, each once.
#ifndef CAPBROKER_SDK_CAPCTL_CAPCTL_H_
#define CAPBROKER_SDK_CAPCTL_CAPCTL_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace capbroker {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitPermissionDenied = 3;
inline constexpr int kExitNotFound = 4;
inline constexpr int kExitUnavailable = 5;
inline constexpr int kExitCannotExec = 127;

// How long capctl waits for each answer of the broker without --timeout:
// 690 s, longer than the longest the broker itself makes a request wait
// (a connect waiting for its service's start: a restart delay of at most
// 30 s, then the policy's startTimeoutMs, at most 600 s), so that only a
// broker that does not answer at all runs into it.
extern const absl::Duration kDefaultTimeout;

// The exit code for a failed call's status.
int ExitCodeFor(const absl::Status& status);

// Runs capctl with `args` (without argv[0]) and returns the exit code.
// `out` is flushed before it returns: when what the command wrote could not
// be written (a full disk), a command that succeeded fails with exit 1 and
// "capctl: write to stdout: <why>".
// `exec` replaces the calling process on success (execvp, in place, so that
// LISTEN_PID is this process's pid) and so never returns then: tests run it
// in a forked child. Not thread-safe (exec changes the environment).
int RunCapctl(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CAPCTL_CAPCTL_H_

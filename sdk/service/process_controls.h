// The prctl settings a service's processes make at start: not dumpable, and
// SIGKILL at the parent's death. One place for both, so that a service's
// start checks each the way its children set it, with one error each.
//
// A seccomp filter may refuse either (EPERM): the error names the call and
// says what the sandbox must allow (services/README.md, "What the sandbox
// must allow").
#ifndef CAPBROKER_SDK_SERVICE_PROCESS_CONTROLS_H_
#define CAPBROKER_SDK_SERVICE_PROCESS_CONTROLS_H_

#include "absl/status/status.h"

namespace capbroker {

// prctl(PR_SET_DUMPABLE, 0): no other process of this uid can open this
// one's /proc/PID/mem (nor ptrace it); no core dumps.
absl::Status MakeNotDumpable();

// prctl(PR_SET_PDEATHSIG, SIGKILL): this process is killed when the thread
// that started it exits.
absl::Status DieWithParent();

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_PROCESS_CONTROLS_H_

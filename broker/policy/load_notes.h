// LoadNotes: what is noted about a policy as it loads (the broker, at start
// and at every reload) or is checked (`capctl policy check`): never errors,
// things an administrator should know.
#ifndef CAPBROKER_BROKER_POLICY_LOAD_NOTES_H_
#define CAPBROKER_BROKER_POLICY_LOAD_NOTES_H_

#include <string>
#include <vector>

#include "broker/policy/policy.h"

namespace capbroker {

// RemotePathNotes, then ScriptExeNotes, with this process's mount table,
// read once and only when the policy has a capability path or an exe rule
// (and read again for each `exe` file ScriptExeNotes opens, see
// script_exes.h). When it cannot be read, one note for each of the two
// that needed it says why (and no file is looked at).
std::vector<std::string> LoadNotes(const Policy& policy);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_LOAD_NOTES_H_

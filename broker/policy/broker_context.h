// BrokerContext: what the broker that is to enforce a policy provides, where
// a policy setting depends on it.
//
// Most of a policy stands on its own. A service's memoryMax and pidsMax do
// not: they are applied in a cgroup the broker makes in its `--cgroup DIR`,
// so a broker without one (or whose directory does not enable the
// controller) could not apply them. Such a policy is refused whole when it
// is loaded, at the limit's line and column, rather than failing each
// launch later (or, worse, running the service without its limit).
//
// `capctl policy check` does not know the flags of the broker that will
// load the file: it leaves `cgroup` unset, and says what it did not check.
#ifndef CAPBROKER_BROKER_POLICY_BROKER_CONTEXT_H_
#define CAPBROKER_BROKER_POLICY_BROKER_CONTEXT_H_

#include <optional>

#include "broker/sandbox/settings.h"

namespace capbroker {

struct BrokerContext {
  // The broker's cgroup directory and the controllers it enables for the
  // services' cgroups (path "" when the broker has none); nullopt when the
  // broker is not known, and then memoryMax and pidsMax are not checked.
  std::optional<sandbox::CgroupParent> cgroup;
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_BROKER_CONTEXT_H_

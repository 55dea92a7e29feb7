// The starter policy that `capctl policy init` prints: a small, valid policy
// whose comments explain every field, for an admin to copy and edit.
#ifndef CAPBROKER_BROKER_POLICY_STARTER_POLICY_H_
#define CAPBROKER_BROKER_POLICY_STARTER_POLICY_H_

#include "absl/strings/string_view.h"

namespace capbroker {

// The starter policy text. It loads without error (a test checks), so it is
// also a working example of every field.
absl::string_view StarterPolicyText();

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_STARTER_POLICY_H_

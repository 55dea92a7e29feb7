// Checks the length of each list a policy limits, on TextLocator's tree,
// before capnp::TextCodec decodes the text.
//
// TextCodec builds a tree of the whole text, then a message of it, before
// the validators could count a list: a 1 MiB file of 350,000 grants cost
// about 150 MB, in capctl and in the broker at every reload. A list over
// its limit is refused here instead, at the list, naming the limit. The
// limits are the validators' (kMaxCapabilities, kMaxServices, ...), which
// still check them on what they are given.
#ifndef CAPBROKER_BROKER_POLICY_LIST_SIZES_H_
#define CAPBROKER_BROKER_POLICY_LIST_SIZES_H_

#include "broker/policy/diagnostics.h"
#include "broker/policy/text_locator.h"

namespace capbroker {

// Adds an error to `diagnostics` for each list in `locator`'s tree (a
// policy's text, without syntax errors) that has more entries than its
// limit. Cost: linear in the tree.
void CheckListSizes(const TextLocator& locator, Diagnostics& diagnostics);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_LIST_SIZES_H_

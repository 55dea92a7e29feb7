// ValidatePolicy on what TextCodec never produces: enum values and a union
// kind this broker does not know, as a policy written for a newer broker
// (or a message built by hand) carries. TextCodec refuses an unknown name
// and any number for an enum, so these values are written into the decoded
// message here, as raw numbers, before validation.
#include "broker/policy/policy_validator.h"

#include <cstdint>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/diagnostics.h"
#include "broker/policy/text_locator.h"
#include "capnp/any.h"
#include "capnp/message.h"
#include "capnp/schema.h"
#include "capnp/serialize-text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kj/string.h"
#include "schemas/policy.capnp.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

// Every field set in the text, so that each error is located at its value.
constexpr char kPolicy[] = R"((
  capabilities = [ ( name = "m", memory = ( size = 4096 ) ) ],
  services = [ ( name = "s", command = [ "/bin/s" ], activation = atStart,
                 restart = never, readiness = exec,
                 sandbox = ( landlock = required,
                             restrictAddressFamilies = [ unix, inet ] ) ) ] ))";

// A number past the last of every enum and union here.
constexpr uint16_t kUnknown = 99;

// ValidatePolicy's errors for kPolicy, decoded, after `change` to it.
absl::Status ValidateChanged(absl::FunctionRef<void(policy::Policy::Builder)> change) {
  capnp::MallocMessageBuilder message;
  policy::Policy::Builder policy = message.initRoot<policy::Policy>();
  capnp::TextCodec codec;
  codec.decode(kj::StringPtr(kPolicy, sizeof(kPolicy) - 1), policy);
  change(policy);
  const TextLocator locator = TextLocator::Parse(kPolicy);
  Diagnostics diagnostics("policy.cb", locator);
  std::optional<Policy> validated =
      ValidatePolicy(policy.asReader(), locator, "policy.cb", BrokerContext(), diagnostics);
  EXPECT_EQ(validated.has_value(), diagnostics.count() == 0);
  return diagnostics.ToStatus();
}

TEST(ValidatePolicyTest, TheTextAsWrittenIsValid) {
  EXPECT_OK(ValidateChanged([](policy::Policy::Builder) {}));
}

// Refused, never guessed: each unknown value is an error at its place.
TEST(ValidatePolicyTest, RefusesEnumValuesThisBrokerDoesNotKnow) {
  const std::string unknown = " has a value this broker does not know";
  EXPECT_THAT(ValidateChanged([](policy::Policy::Builder policy) {
                policy::Service::Builder service = policy.getServices()[0];
                service.setActivation(static_cast<policy::Activation>(kUnknown));
                service.setRestart(static_cast<policy::Restart>(kUnknown));
                service.setReadiness(static_cast<policy::Readiness>(kUnknown));
                service.getSandbox().setLandlock(static_cast<policy::Protection>(kUnknown));
                service.getSandbox().getRestrictAddressFamilies().set(
                    1, static_cast<policy::AddressFamily>(kUnknown));
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("policy.cb:3:67: service 's': activation", unknown,
                                    "\npolicy.cb:4:28: service 's': restart", unknown,
                                    "\npolicy.cb:4:47: service 's': readiness", unknown,
                                    "\npolicy.cb:5:41: service 's': landlock", unknown,
                                    "\npolicy.cb:6:64: service 's': restrictAddressFamilies",
                                    unknown)));
}

// A capability kind past the union's last member (its discriminant, which
// no builder setter writes out of range, set in the struct's data section).
TEST(ValidatePolicyTest, RefusesACapabilityKindThisBrokerDoesNotKnow) {
  EXPECT_THAT(ValidateChanged([](policy::Policy::Builder policy) {
                capnp::AnyStruct::Builder capability(policy.getCapabilities()[0]);
                const uint32_t offset = capnp::Schema::from<policy::Capability>()
                                            .getProto()
                                            .getStruct()
                                            .getDiscriminantOffset();  // in 16-bit units
                kj::ArrayPtr<capnp::byte> data = capability.getDataSection();
                ASSERT_GE(data.size(), (offset + 1) * 2u);
                data[offset * 2] = kUnknown;  // little-endian, as Cap'n Proto is
                data[offset * 2 + 1] = 0;
                ASSERT_EQ(static_cast<uint16_t>(policy.getCapabilities()[0].which()), kUnknown);
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("capability 'm' has a kind this broker does not know")));
}

}  // namespace
}  // namespace capbroker

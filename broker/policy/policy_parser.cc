#include "broker/policy/policy_parser.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "broker/policy/codec_error.h"
#include "broker/policy/diagnostics.h"
#include "broker/policy/field_uniqueness.h"
#include "broker/policy/list_sizes.h"
#include "broker/policy/policy_validator.h"
#include "broker/policy/text_locator.h"
#include "capnp/message.h"
#include "capnp/serialize-text.h"
#include "kj/exception.h"
#include "schemas/policy.capnp.h"
#include "sdk/base/escape.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_macros.h"

namespace capbroker {

absl::StatusOr<Policy> ParsePolicy(absl::string_view text, absl::string_view filename,
                                   const BrokerContext& broker) {
  if (text.size() > kMaxPolicyBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(EscapedKeepingUtf8(filename), ": the policy is ", text.size(),
                     " bytes; the limit is ", kMaxPolicyBytes, " bytes (1 MiB)"));
  }
  // Past kMaxPolicyValues, CheckListSizes refuses the text: the tree stops
  // at the value past them.
  TextLocator locator = TextLocator::Parse(text, kMaxPolicyValues);
  Diagnostics diagnostics(filename, locator);
  if (const auto& error = locator.syntax_error(); error.has_value()) {
    diagnostics.AddAt(error->offset, absl::StrCat("syntax error: ", error->message));
    return diagnostics.ToStatus();
  }
  // Before TextCodec builds a tree and a message of every value.
  CheckListSizes(locator, diagnostics);
  if (diagnostics.count() > 0) return diagnostics.ToStatus();

  // TextCodec wants a NUL-terminated string; TextLocator has refused NULs
  // inside the text, so the copy means the same to both.
  std::string terminated(text);
  capnp::MallocMessageBuilder message;
  policy::Policy::Builder builder = message.initRoot<policy::Policy>();
  capnp::StructSchema schema = capnp::Schema::from<policy::Policy>();
  // Not CatchKj: explaining the error needs the exception's line number,
  // which a status does not keep.
  kj::Maybe<kj::Exception> exception = kj::runCatchingExceptions([&]() {
    capnp::TextCodec codec;
    codec.decode(kj::StringPtr(terminated.c_str(), terminated.size()), builder);
  });
  KJ_IF_MAYBE(e, exception) {
    LocatedMessage explained = ExplainCodecError(*e, locator, schema);
    diagnostics.AddAt(explained.offset, explained.message);
    return diagnostics.ToStatus();
  }

  // A text with a field given twice (or two members of a union) is not
  // validated further: that is the error to fix first, and without repeats
  // a struct holds at most its schema's fields (TextCodec refused any
  // other), which bounds each step of every path the validator locates
  // (TextLocator::OffsetOf) by the largest struct of the schema. With
  // repeats, a root giving `services = []` 50,000 times cost a scan of them
  // all for every one of 100,000 unknown grants.
  std::optional<Policy> policy;
  absl::Status status = CatchKj(absl::StrCat(EscapedKeepingUtf8(filename),
                                             ": reading the decoded policy"),
                                [&]() {
                                  CheckFieldUniqueness(locator, schema, diagnostics);
                                  if (diagnostics.count() > 0) return absl::OkStatus();
                                  policy = ValidatePolicy(builder.asReader(), locator,
                                                          filename, broker, diagnostics);
                                  return absl::OkStatus();
                                });
  if (!status.ok()) return status;
  if (diagnostics.count() > 0 || !policy.has_value()) {
    CB_RETURN_IF_ERROR(diagnostics.ToStatus());
    return absl::InternalError(absl::StrCat(EscapedKeepingUtf8(filename),
                                            ": validation failed without a message"));
  }
  return std::move(*policy);
}

}  // namespace capbroker

// ParsePolicy: policy text (Cap'n Proto text format, see
// schemas/policy.capnp) to a validated Policy.
//
// The text is read in five stages, each failing closed; a policy is
// accepted whole or rejected whole:
//   1. TextLocator checks the syntax (and refuses what TextCodec would crash
//      on or misread: deep nesting, integers beyond 64 bits).
//   2. Lists longer than their limits, and a text of more values than a
//      policy may hold, are refused (list_sizes.h), before TextCodec spends
//      memory on them.
//   3. capnp::TextCodec decodes it into policy::Policy, checking field names
//      and types against the schema.
//   4. Fields given twice and union members given together are refused
//      (TextCodec silently keeps the last one).
//   5. Semantic validation (policy_validator.h), only when stage 4 found
//      nothing.
// Errors are "FILE:LINE:COL: message" lines (columns count characters). A
// syntax or schema error stops at the first; the errors of stage 2, 4 or
// 5, the first stage that finds any, are all reported (up to
// kMaxReportedErrors), one per line.
//
// Number literals follow C: `mode = 0600` is octal (384), `0x180` hex, a
// number without a leading 0 decimal. A decimal mode is refused, because
// `mode = 600` would mean 01130.
//
// Pure: no I/O of its own (only `broker.resolve_program`, when given, is
// called for each principal's exe). Safe to call on untrusted text (it has
// a fuzz target).
#ifndef CAPBROKER_BROKER_POLICY_POLICY_PARSER_H_
#define CAPBROKER_BROKER_POLICY_POLICY_PARSER_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/policy.h"

namespace capbroker {

// Largest policy text accepted, checked before any parsing. Real policies
// are a few KiB; the cap bounds parse time and memory.
inline constexpr size_t kMaxPolicyBytes = size_t{1} << 20;  // 1 MiB

// Parses and validates `text`. `filename` names the source in messages and
// becomes Policy::source(). `broker` is what the broker that will enforce
// it offers (see BrokerContext); by default not known, and the settings
// that depend on it are not checked. Errors: kInvalidArgument (the text is
// wrong, or asks for what `broker` cannot do), kResourceExhausted (larger
// than kMaxPolicyBytes).
absl::StatusOr<Policy> ParsePolicy(absl::string_view text, absl::string_view filename,
                                   const BrokerContext& broker = BrokerContext());

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_POLICY_PARSER_H_

// libFuzzer entry point for ParsePolicy, the parser of the policy file.
//
// By hand, with clang-14 and libFuzzer (apt-get install clang-14
// libclang-rt-14-dev), from the workspace root after `bazel build //schemas`
// (for the generated schema code), as one line:
//   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined
//     -I. -Ibazel-bin broker/policy/{excerpt,text_locator,schema_path,spelling,
//     diagnostics,codec_error,field_uniqueness,checks,service_validator,
//     policy_validator,list_sizes,policy,policy_parser,policy_parser_fuzz}.cc
//     sdk/base/kj_status.cc sdk/wire/names.cc
//     bazel-bin/schemas/{broker,policy}.capnp.c++ -lcapnpc -lcapnp -lkj
//     -Wl,--start-group <the -l:libabsl_*.a list of bazel/system.BUILD>
//     -Wl,--end-group -o /tmp/policy_fuzzer
// then `ASAN_OPTIONS=malloc_context_size=1 /tmp/policy_fuzzer -max_len=8192
// CORPUS_DIR`. (Debian's libraries have no frame pointers, so AddressSanitizer
// records a junk stack for most allocations and grows by gigabytes within
// minutes unless told to keep one frame.) An input of 8 KiB is far from
// the policy's value limit (kMaxPolicyValues: 130 KB of text at the
// least): one that begins with kRepeatMark stands for a fragment repeated
// (policy_parser_fuzz.h). Seed CORPUS_DIR with one, so that the fuzzer
// starts at that limit:
//   printf '\x01\x00\x00\x02(a=[]\x01,a=[]\x01)' > CORPUS_DIR/values
// (head "(a=[]", then ",a=[]" 131072 times, then ")"). In
// `make test`, policy_parser_fuzz_test runs this function over inputs
// written in it, that one among them.
//
// Beyond "does not crash", it checks what callers rely on: every error is
// about the named file and stays short, and a policy that loads is
// internally consistent. A broken invariant aborts, which libFuzzer reports.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "broker/policy/policy.h"
#include "broker/policy/policy_parser.h"
#include "broker/policy/policy_parser_fuzz.h"

namespace capbroker {

std::string PolicyFuzzText(absl::string_view input) {
  if (!absl::ConsumePrefix(&input, absl::string_view(&kRepeatMark, 1))) {
    return std::string(input);
  }
  size_t count = 0;
  for (int i = 0; i < 3 && !input.empty(); ++i) {
    count |= static_cast<size_t>(static_cast<uint8_t>(input[0])) << (8 * i);
    input.remove_prefix(1);
  }
  std::vector<absl::string_view> parts =
      absl::StrSplit(input, absl::MaxSplits(kRepeatMark, 2));
  parts.resize(3);
  const absl::string_view head = parts[0], fragment = parts[1], tail = parts[2];
  // No fragment at all when head and tail fill the bound by themselves.
  const size_t room = kMaxFuzzTextBytes - std::min(kMaxFuzzTextBytes, head.size() + tail.size());
  if (!fragment.empty()) count = std::min(count, room / fragment.size());
  std::string text;
  text.reserve(head.size() + count * fragment.size() + tail.size());
  text.append(head.data(), head.size());
  for (size_t i = 0; i < count; ++i) text.append(fragment.data(), fragment.size());
  text.append(tail.data(), tail.size());
  return text;
}

}  // namespace capbroker

namespace {

// The longest line an error may have: excerpts are capped, and the longest
// fixed text (a type hint listing fields) is a few hundred bytes.
constexpr size_t kMaxErrorLineBytes = 1024;
constexpr absl::string_view kFilename = "fuzz.cb";
// kMaxReportedErrors (diagnostics.h, private to the package) plus the line
// counting the rest.
constexpr size_t kMaxErrorLines = 21;

void Require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "policy_parser_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

void CheckError(const absl::Status& status) {
  Require(status.code() == absl::StatusCode::kInvalidArgument ||
              status.code() == absl::StatusCode::kResourceExhausted,
          "error code is kInvalidArgument or kResourceExhausted");
  std::vector<absl::string_view> lines = absl::StrSplit(status.message(), '\n');
  Require(lines.size() <= kMaxErrorLines, "at most 20 errors and a count");
  for (absl::string_view line : lines) {
    Require(absl::StartsWith(line, absl::StrCat(kFilename, ":")), "line names the file");
    Require(line.size() <= kMaxErrorLineBytes, "line is short");
    Require(absl::c_none_of(line, [](char c) { return absl::ascii_iscntrl(c); }),
            "line has no control character");
  }
}

void CheckPolicy(const capbroker::Policy& policy) {
  const std::vector<capbroker::CapabilitySpec>& capabilities = policy.capabilities();
  for (const capbroker::CapabilitySpec& capability : capabilities) {
    Require(policy.FindCapability(capability.name) == &capability, "names are unique");
    Require(capability.kind == capbroker::Kind::kMemory || capability.path[0] == '/',
            "paths are absolute");
  }
  for (const capbroker::PrincipalSpec& principal : policy.principals()) {
    for (size_t grant : principal.grants) {
      Require(grant < capabilities.size(), "grants are in range");
    }
    capbroker::Identity identity{principal.uid.value_or(0), principal.gid.value_or(0), 1,
                                 principal.exe, ""};
    for (size_t grant : principal.grants) {
      capbroker::Decision decision = policy.Decide(
          identity, capabilities[grant].name, capbroker::schema::Access::UNSPECIFIED);
      Require(decision.status.ok(), "a principal's own grant is granted");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = capbroker::PolicyFuzzText(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  absl::StatusOr<capbroker::Policy> policy = capbroker::ParsePolicy(text, kFilename);
  if (policy.ok()) {
    CheckPolicy(*policy);
  } else {
    CheckError(policy.status());
  }
  return 0;
}

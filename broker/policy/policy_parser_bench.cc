// policy_parser_bench: how ParsePolicy's time grows with the errors of a
// hostile policy. The broker parses on its only thread (at start and on
// every SIGHUP), so an error that costs work proportional to the text, for
// every error, makes a policy of the allowed size take minutes.
//
// Only the errors shown (kMaxReportedErrors) get the costly extras: a
// "did you mean" (a comparison with every name) and the place of a first
// occurrence (a scan of its line). Each benchmark grows the errors and
// what each extra would cost together, with N; Google Benchmark fits the
// growth (the BigO line): it must stay O(N). An extra computed for every
// error shows as O(N^2). The unit tests (service_policy_test,
// policy_parser_test) check the messages; their timeout is only a backstop.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "benchmark/benchmark.h"
#include "broker/policy/policy_parser.h"

namespace capbroker {
namespace {

// N unknown connect names of 64 bytes, and N / 2 principals of 64-byte
// names that each would be compared with.
std::string UnknownConnectNames(int n) {
  std::vector<std::string> principals;
  for (int i = 0; i < n / 2; ++i) {
    principals.push_back(absl::StrFormat(R"((name="p%063d",match=(uid=1)))", i));
  }
  std::vector<std::string> services;
  constexpr int kPerService = 1024;  // under the limit of a connect list
  for (int s = 0; s * kPerService < n; ++s) {
    std::vector<std::string> unknown;
    for (int i = s * kPerService; i < n && i < (s + 1) * kPerService; ++i) {
      unknown.push_back(absl::StrFormat(R"("q%063d")", i));
    }
    services.push_back(absl::StrFormat(R"((name="s%d",command=["/bin/s"],connect=[%s]))", s,
                                       absl::StrJoin(unknown, ",")));
  }
  return absl::StrCat("(principals=[", absl::StrJoin(principals, ","), "],\nservices=[",
                      absl::StrJoin(services, ","), "])");
}

// N repeats of a field on a line of 8 * N bytes, which locating each
// repeat's first occurrence would scan.
std::string RepeatsOnALongLine(int n) {
  std::vector<std::string> uids(n, "uid=1");
  return absl::StrCat(R"((principals=[(name="a",match=(uid=1,exe="/)", std::string(8 * n, 'x'),
                      R"(")),(name="q",match=()", absl::StrJoin(uids, ","), "))])");
}

void Parse(benchmark::State& state, const std::string& text) {
  if (text.size() > kMaxPolicyBytes) {
    state.SkipWithError("the text is over kMaxPolicyBytes");
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<Policy> policy = ParsePolicy(text, "bench.capnp");
    if (policy.ok()) state.SkipWithError("the hostile policy was accepted");
    benchmark::DoNotOptimize(policy);
  }
  state.SetComplexityN(state.range(0));
}

void BM_UnknownConnectNames(benchmark::State& state) {
  Parse(state, UnknownConnectNames(static_cast<int>(state.range(0))));
}
BENCHMARK(BM_UnknownConnectNames)
    ->RangeMultiplier(2)
    ->Range(1024, 8192)
    ->Unit(benchmark::kMillisecond)
    ->Complexity();

void BM_RepeatsOnALongLine(benchmark::State& state) {
  Parse(state, RepeatsOnALongLine(static_cast<int>(state.range(0))));
}
BENCHMARK(BM_RepeatsOnALongLine)
    ->RangeMultiplier(2)
    ->Range(2048, 32768)
    ->Unit(benchmark::kMillisecond)
    ->Complexity();

}  // namespace
}  // namespace capbroker

BENCHMARK_MAIN();

// Services in the policy: parsing, validation errors, and the decisions
// that involve them (connect, a service acquiring as its own principal).
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "broker/policy/policy.h"
#include "broker/policy/policy_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using schema::Access;

// A policy with one principal, two capabilities and the services given.
std::string WithServices(absl::string_view services) {
  return absl::StrCat(R"(( capabilities = [
    ( name = "db", file = ( path = "/etc/motd", access = read ) ),
    ( name = "data", directory = ( path = "/var/lib", access = readWrite ) ) ],
  principals = [ ( name = "ops", match = ( uid = 1000 ), grants = [ "db" ] ) ],
  services = [ )",
                      services, " ] )");
}

std::string ErrorFor(absl::string_view services) {
  absl::StatusOr<Policy> policy = ParsePolicy(WithServices(services), "policy.cb");
  EXPECT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  return std::string(policy.status().message());
}

TEST(ServicePolicyTest, DefaultsAreSecureAndOnDemand) {
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(WithServices(R"(( name = "scanner", command = [ "/usr/bin/scan", "-v" ],
                                    grants = [ "db" ], connect = [ "ops" ] ))"),
                  "policy.cb"));
  ASSERT_EQ(policy.services().size(), 1u);
  const ServiceSpec& s = policy.services()[0];
  EXPECT_EQ(s.command, (std::vector<std::string>{"/usr/bin/scan", "-v"}));
  EXPECT_EQ(s.activation, Activation::kOnDemand);
  EXPECT_EQ(s.restart, RestartMode::kOnFailure);
  EXPECT_EQ(s.readiness, Readiness::kNotify);
  EXPECT_EQ(s.restart_limit, 5u);
  EXPECT_FALSE(s.user.has_value());
  EXPECT_FALSE(s.accepts_fds);  // its clients' fds are refused by the kernel
  const sandbox::Protections& p = s.protections;
  for (sandbox::Requirement r :
       {p.private_users, p.protect_system, p.private_pids, p.private_ipc,
        p.protect_hostname, p.private_network, p.no_new_privileges, p.drop_capabilities,
        p.system_call_filter, p.landlock}) {
    EXPECT_EQ(r, sandbox::Requirement::kRequired);
  }
  ASSERT_EQ(p.restrict_address_families.size(), 1u);
  EXPECT_EQ(p.restrict_address_families[0], sandbox::AddressFamily::kUnix);
}

// `capctl connect -h -- ...` would print connect's help: a service name
// capctl reads as an option is refused where it is written.
TEST(ServicePolicyTest, ANameCapctlReadsAsAnOptionIsRefused) {
  const std::string text =
      WithServices(R"(( name = "-h", command = [ "/usr/bin/scan" ], connect = [ "ops" ] ))");
  absl::StatusOr<Policy> policy = ParsePolicy(text, "policy.cb");
  const size_t at = text.find("\"-h\"");
  const size_t line_start = text.rfind('\n', at) + 1;
  EXPECT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument,
                               absl::StrCat("policy.cb:5:", at - line_start + 1,
                                            ": service name '-h' is invalid: a name starts "
                                            "with a letter or digit (capctl would read '-h' "
                                            "as an option)")));
}

TEST(ServicePolicyTest, SandboxSettingsAreRead) {
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(WithServices(R"(( name = "s", command = [ "/bin/s" ],
          sandbox = ( landlock = bestEffort, privateNetwork = off,
                      restrictAddressFamilies = [ unix, inet ] ) ))"),
                  "policy.cb"));
  const sandbox::Protections& p = policy.services()[0].protections;
  EXPECT_EQ(p.landlock, sandbox::Requirement::kBestEffort);
  EXPECT_EQ(p.private_network, sandbox::Requirement::kOff);
  EXPECT_EQ(p.restrict_address_families.size(), 2u);
}

TEST(ServicePolicyTest, AServiceTakesClientsFdsOnlyWhenItSaysSo) {
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(WithServices(R"(( name = "scanner", command = [ "/bin/s" ], acceptsFds = true ),
                                  ( name = "store", command = [ "/bin/t" ], acceptsFds = false ))"),
                  "policy.cb"));
  EXPECT_TRUE(policy.services()[0].accepts_fds);
  EXPECT_FALSE(policy.services()[1].accepts_fds);
}

TEST(ServicePolicyTest, ErrorsNameTheirPlace) {
  EXPECT_THAT(ErrorFor(R"(( name = "s" ))"), HasSubstr("service 's' has no command"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "scan" ] ))"),
              HasSubstr("command[0] (the program) must be absolute"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], grants = [ "dbb" ] ))"),
              HasSubstr("grants 'dbb', which is not a capability in this policy; "
                        "did you mean 'db'?"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], connect = [ "opz" ] ))"),
              HasSubstr("not a principal or service in this policy; did you mean 'ops'?"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ],
                            environment = [ "LISTEN_FDS=3" ] ))"),
              HasSubstr("LISTEN_FDS is set by the broker"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], environment = [ "X" ] ))"),
              HasSubstr("environment entry 'X' is not NAME=VALUE"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ],
                            environment = [ "A=1", "A=2" ] ))"),
              HasSubstr("A is set twice"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], user = 0 ))"),
              HasSubstr("a service never runs as root"));
  // -1 stands for "left out" in the schema; written, it is refused.
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], user = -1 ))"),
              HasSubstr("policy.cb:5:61: service 's': user -1 is out of range: 0 to "
                        "4294967294 (or leave it out to use the default)"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], group = -1 ))"),
              HasSubstr("service 's': group -1 is out of range"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], user = "65534" ))"),
              HasSubstr("must be a whole number from 0 to 4294967294 (a uid;"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], restartDelayMs = 0 ))"),
              HasSubstr("restartDelayMs 0 is out of range: 1 to"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ],
                            sandbox = ( restrictAddressFamilies = [ inet, inet ] ) ))"),
              HasSubstr("service 's': restrictAddressFamilies lists inet twice; list it "
                        "once"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ],
                            sandbox = ( landlok = off ) ))"),
              HasSubstr("did you mean 'landlock'?"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ],
                            sandbox = ( landlock = optional ) ))"),
              HasSubstr("required, bestEffort, off"));
}

// `n` copies of `item`, comma-separated.
std::string Repeated(size_t n, absl::string_view item) {
  return absl::StrJoin(std::vector<absl::string_view>(n, item), ", ");
}

// One rule broken, one refusal: the error names the field and the bound it
// passes (or what is wrong with the value). Each text breaks one rule only,
// so each case fails if that rule's check is removed.
struct Refusal {
  std::string name;
  std::string services;  // the services list, in WithServices' policy
  std::vector<std::string> says;  // each in the error

  friend void PrintTo(const Refusal& refusal, std::ostream* os) { *os << refusal.name; }
};

class ServiceRefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(ServiceRefusalTest, NamesTheFieldAndTheLimit) {
  const std::string error = ErrorFor(GetParam().services);
  for (const std::string& part : GetParam().says) EXPECT_THAT(error, HasSubstr(part));
}

std::string Service(absl::string_view fields) {
  return absl::StrCat(R"(( name = "s", command = [ "/bin/s" ], )", fields, " )");
}

INSTANTIATE_TEST_SUITE_P(
    Limits, ServiceRefusalTest,
    ::testing::Values(
        Refusal{"TooManyServices",
                [] {
                  std::vector<std::string> services;
                  for (int i = 0; i < 257; ++i) {
                    services.push_back(absl::StrFormat(R"((name="s%d",command=["/bin/s"]))", i));
                  }
                  return absl::StrJoin(services, ",");
                }(),
                {"too many services: 257; the limit is 256"}},
        Refusal{"TooManyArguments",
                absl::StrCat(R"(( name = "s", command = [ "/bin/s", )", Repeated(256, R"("a")"),
                             " ] )"),
                {"service 's' has 257 command arguments; the limit is 256"}},
        Refusal{"ArgumentWithANul", R"(( name = "s", command = [ "/bin/s", "a\x00b" ] ))",
                {"service 's': argument 1 contains a NUL byte"}},
        Refusal{"ArgumentTooLong",
                absl::StrCat(R"(( name = "s", command = [ "/bin/s", ")", std::string(4097, 'a'),
                             R"(" ] ))"),
                {"service 's': argument 1 is 4097 bytes long; the limit is 4096"}},
        Refusal{"TooManyVariables",
                Service(absl::StrCat("environment = [ ", Repeated(257, R"("A=1")"), " ]")),
                {"service 's' has 257 environment entries; the limit is 256"}},
        Refusal{"VariableWithANul", Service(R"(environment = [ "A=1\x00B=2" ])"),
                {"service 's': environment entry 0 contains a NUL byte"}},
        Refusal{"VariableTooLong",
                Service(absl::StrCat(R"(environment = [ "A=)", std::string(4095, 'a'),
                                     R"(" ])")),
                {"service 's': environment entry 0 is 4097 bytes long; the limit is 4096"}},
        Refusal{"TooManyGrants",
                Service(absl::StrCat("grants = [ ", Repeated(129, R"("db")"), " ]")),
                {"service 's' has 129 grants; the limit is 128"}},
        Refusal{"TooManyConnectNames",
                Service(absl::StrCat("connect = [ ", Repeated(1025, R"("ops")"), " ]")),
                {"service 's' has 1025 connect names; the limit is 1024"}},
        Refusal{"TooManyAddressFamilies",
                Service("sandbox = ( restrictAddressFamilies = [ unix, inet, inet6, netlink, "
                        "unix ] )"),
                {"service 's' has 5 address families in restrictAddressFamilies; the limit "
                 "is 4, the number of address families there are: list each once"}},
        Refusal{"ConnectNameTwice", Service(R"(connect = [ "ops", "ops" ])"),
                {"service 's': connect lists 'ops' twice; list it once"}},
        Refusal{"RestartLimitTooHigh", Service("restartLimit = 1001"),
                {"service 's': restartLimit 1001 is out of range: 0 to 1000"}},
        Refusal{"StartTimeoutZero", Service("startTimeoutMs = 0"),
                {"service 's': startTimeoutMs 0 is out of range: 1 to 600000"}},
        Refusal{"StartTimeoutTooLong", Service("startTimeoutMs = 600001"),
                {"service 's': startTimeoutMs 600001 is out of range: 1 to 600000"}},
        // A leading 0 is octal: `user = 01750` would run the service as
        // uid 1000, not the 1750 it seems to name.
        Refusal{"OctalUser", Service("user = 01750"),
                {"service 's': user 01750 is octal here (= 1000 decimal); write ids in "
                 "decimal, without a leading 0: 1750"}},
        Refusal{"OctalGroup", Service("group = 0100"),
                {"service 's': group 0100 is octal here (= 64 decimal); write ids in "
                 "decimal, without a leading 0: 100"}}),
    [](const ::testing::TestParamInfo<Refusal>& info) { return info.param.name; });

// An octal id's decimal reading is suggested only when it would be taken:
// a service never runs as root, so `user = 00` is not told to write 0.
TEST(ServicePolicyTest, AnOctalIdSuggestsOnlyAnIdTheServiceTakes) {
  EXPECT_THAT(ErrorFor(Service("user = 00")),
              EndsWith("service 's': user 00 is octal here (= 0 decimal); write ids in "
                       "decimal, without a leading 0"));
}

// At each limit, the policy loads: the refusals above are of one more.
TEST(ServicePolicyTest, EachLimitItselfIsAllowed) {
  std::vector<std::string> capabilities, grants, principals, connect, services;
  for (int i = 0; i < 128; ++i) {
    capabilities.push_back(absl::StrFormat(R"((name="c%d",memory=(size=1)))", i));
    grants.push_back(absl::StrFormat(R"("c%d")", i));
  }
  for (int i = 0; i < 1024; ++i) {
    principals.push_back(absl::StrFormat(R"((name="p%d",match=(uid=%d)))", i, i + 1));
    connect.push_back(absl::StrFormat(R"("p%d")", i));
  }
  std::vector<std::string> environment;
  for (int i = 0; i < 256; ++i) environment.push_back(absl::StrFormat(R"("V%d=1")", i));
  services.push_back(absl::StrCat(
      R"((name="s0",command=["/bin/s",)", Repeated(254, R"("a")"), R"(,")",
      std::string(4096, 'a'), R"("],environment=[)", absl::StrJoin(environment, ","),
      R"(],grants=[)", absl::StrJoin(grants, ","), R"(],connect=[)",
      absl::StrJoin(connect, ","),
      R"(],restartLimit=1000,startTimeoutMs=600000,user=0x3e8,group=1000))"));
  services.push_back(R"((name="s1",command=["/bin/s"],restartLimit=0,startTimeoutMs=1))");
  for (int i = 2; i < 256; ++i) {
    services.push_back(absl::StrFormat(R"((name="s%d",command=["/bin/s"]))", i));
  }
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(absl::StrCat("(capabilities=[", absl::StrJoin(capabilities, ","),
                               "],\nprincipals=[", absl::StrJoin(principals, ","),
                               "],\nservices=[", absl::StrJoin(services, ","), "])"),
                  "policy.cb"));
  ASSERT_EQ(policy.services().size(), 256u);
  const ServiceSpec& s = policy.services()[0];
  EXPECT_EQ(s.command.size(), 256u);
  EXPECT_EQ(s.environment.size(), 256u);
  EXPECT_EQ(s.grants.size(), 128u);
  EXPECT_EQ(s.connect.size(), 1024u);
  EXPECT_EQ(s.user, 1000u);  // hex is never mistaken: 0x is written
}

// The host waits at most 30 s before a restart (the delay doubles up to
// that): a longer restartDelayMs would be cut to 30 s without a word, so it
// is refused, naming the cap.
TEST(ServicePolicyTest, RestartDelayIsAtMostTheLongestTheHostWaits) {
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], restartDelayMs = 30001 ))"),
              HasSubstr("service 's': restartDelayMs 30001 is out of range: 1 to 30000 "
                        "(30 s, the longest the broker waits before a restart"));
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ], restartDelayMs = 120000 ))"),
              HasSubstr("restartDelayMs 120000 is out of range: 1 to 30000"));
  EXPECT_OK(ParsePolicy(
      WithServices(R"(( name = "s", command = [ "/bin/s" ], restartDelayMs = 30000 ))"),
      "policy.cb"));
}

// memoryMax and pidsMax are applied in a cgroup the broker makes in its
// --cgroup DIR. A broker that could not apply them refuses the policy
// whole, at the limit, naming the service, the field and the fix; never
// runs the service without the limit.
TEST(ServicePolicyTest, CgroupLimitsNeedABrokerThatCanApplyThem) {
  std::string text = WithServices(R"(( name = "s", command = [ "/bin/s" ],
                                       limits = ( memoryMax = 1048576, pidsMax = 8 ) ))");
  BrokerContext none;
  none.cgroup = sandbox::CgroupParent{};
  absl::StatusOr<Policy> refused = ParsePolicy(text, "policy.cb", none);
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(refused.status().message(),
            "policy.cb:6:63: service 's': memoryMax needs a cgroup, and this broker has "
            "none: start capbrokerd with --cgroup DIR, a delegated cgroup v2 directory (or "
            "leave memoryMax out)\n"
            "policy.cb:6:82: service 's': pidsMax needs a cgroup, and this broker has none: "
            "start capbrokerd with --cgroup DIR, a delegated cgroup v2 directory (or leave "
            "pidsMax out)");

  BrokerContext pids_only;
  pids_only.cgroup = sandbox::CgroupParent{"/sys/fs/cgroup/cb", false, true, ""};
  EXPECT_THAT(ParsePolicy(text, "policy.cb", pids_only),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("service 's': memoryMax needs the memory controller, which "
                                 "the broker's --cgroup /sys/fs/cgroup/cb does not enable for "
                                 "its children: echo +memory > "
                                 "/sys/fs/cgroup/cb/cgroup.subtree_control")));

  BrokerContext gone;
  gone.cgroup = sandbox::CgroupParent{"/sys/fs/cgroup/cb", true, true, "no such directory"};
  EXPECT_THAT(ParsePolicy(text, "policy.cb", gone),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pidsMax needs a cgroup, and the broker's --cgroup "
                                 "/sys/fs/cgroup/cb cannot be used now: no such directory")));

  BrokerContext both;
  both.cgroup = sandbox::CgroupParent{"/sys/fs/cgroup/cb", true, true, ""};
  EXPECT_OK(ParsePolicy(text, "policy.cb", both).status());
  // Not known (capctl policy check): not checked.
  EXPECT_OK(ParsePolicy(text, "policy.cb").status());
  // Limits that need no cgroup need no --cgroup.
  EXPECT_OK(ParsePolicy(WithServices(R"(( name = "s", command = [ "/bin/s" ],
                                          limits = ( openFiles = 64 ) ))"),
                        "policy.cb", none)
                .status());
}

// A service's rlimits are set soft and hard alike by its child, which can
// never raise a hard limit above the broker's: a limit above the broker's
// hard limit is refused when the policy is loaded, at the field, naming the
// broker's limit and what to do; never left to fail every start.
TEST(ServicePolicyTest, RlimitsAboveTheBrokersHardLimitsAreRefused) {
  std::string text = WithServices(R"(( name = "s", command = [ "/bin/s" ],
      limits = ( openFiles = 30000, addressSpace = 8589934592, processes = 100,
                 cpuSeconds = 60 ) ))");
  BrokerContext low;
  low.hard_limits = BrokerHardLimits{20000, 4294967296, 100, 59};
  absl::StatusOr<Policy> refused = ParsePolicy(text, "policy.cb", low);
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(std::string(refused.status().message()),
            "policy.cb:6:30: service 's': openFiles 30000 is above the broker's hard "
            "RLIMIT_NOFILE, 20000, which no service's limit can exceed (its every start "
            "would fail with EPERM): raise the broker's hard limit (LimitNOFILE= in its "
            "systemd unit, or prlimit --nofile) and reload, or lower openFiles\n"
            "policy.cb:6:52: service 's': addressSpace 8589934592 is above the broker's hard "
            "RLIMIT_AS, 4294967296, which no service's limit can exceed (its every start "
            "would fail with EPERM): raise the broker's hard limit (LimitAS= in its "
            "systemd unit, or prlimit --as) and reload, or lower addressSpace\n"
            "policy.cb:7:31: service 's': cpuSeconds 60 is above the broker's hard "
            "RLIMIT_CPU, 59, which no service's limit can exceed (its every start would "
            "fail with EPERM): raise the broker's hard limit (LimitCPU= in its systemd unit, "
            "or prlimit --cpu) and reload, or lower cpuSeconds");

  // At the broker's limits, or with none (RLIM_INFINITY), it loads.
  BrokerContext enough;
  enough.hard_limits = BrokerHardLimits{30000, 8589934592, 100, 60};
  EXPECT_OK(ParsePolicy(text, "policy.cb", enough).status());
  BrokerContext unlimited;
  unlimited.hard_limits = BrokerHardLimits{};
  EXPECT_OK(ParsePolicy(text, "policy.cb", unlimited).status());
  // Not known (capctl policy check): not checked.
  EXPECT_OK(ParsePolicy(text, "policy.cb").status());
  // 0 (the default) is never above.
  BrokerContext tiny;
  tiny.hard_limits = BrokerHardLimits{1, 1, 1, 1};
  EXPECT_OK(ParsePolicy(WithServices(R"(( name = "s", command = [ "/bin/s" ] ))"),
                        "policy.cb", tiny)
                .status());
  EXPECT_THAT(ParsePolicy(WithServices(R"(( name = "s", command = [ "/bin/s" ],
                                            limits = ( processes = 2 ) ))"),
                          "policy.cb", tiny),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("processes 2 is above the broker's hard RLIMIT_NPROC, 1, "
                                 "which no service's limit can exceed (its every start would "
                                 "fail with EPERM): raise the broker's hard limit "
                                 "(LimitNPROC= in its systemd unit, or prlimit --nproc) and "
                                 "reload, or lower processes")));
}

// Each repeated address family is one error, at the repetition, naming the
// family: never one per earlier copy (8,000 x unix made 32 million errors,
// quadratic time on the broker's thread). A list longer than there are
// families is one error, before decoding (list_sizes.h).
TEST(ServicePolicyTest, ARepeatedAddressFamilyIsOneErrorAtEachRepetition) {
  const std::string error = ErrorFor(R"(( name = "s", command = [ "/bin/s" ],
      sandbox = ( restrictAddressFamilies = [ unix, inet, unix, unix ] ) ))");
  const std::vector<std::string> lines = absl::StrSplit(error, '\n');
  ASSERT_EQ(lines.size(), 2u) << error;
  EXPECT_EQ(lines[0], "policy.cb:6:59: service 's': restrictAddressFamilies lists unix "
                      "twice; list it once");
  EXPECT_EQ(lines[1], "policy.cb:6:65: service 's': restrictAddressFamilies lists unix "
                      "twice; list it once");

  std::vector<std::string> families(8000, "unix");
  const std::string many =
      ErrorFor(absl::StrCat(R"(( name = "s", command = [ "/bin/s" ],
      sandbox = ( restrictAddressFamilies = [ )",
                            absl::StrJoin(families, ", "), " ] ) )"));
  EXPECT_THAT(many, EndsWith("service 's' has 8000 address families in restrictAddressFamilies; "
                             "the limit is 4, the number of address families there are: list "
                             "each once"));
  EXPECT_THAT(many, Not(HasSubstr("\n"))) << many;
}

// A "did you mean" compares the name with every principal and service name.
// Computed for every unknown connect name, a generated policy (4,096
// principals of 64-byte names, 8,192 unknown names of 64 bytes) kept the
// broker's only thread busy for minutes; only the errors shown get one.
// The growth itself is watched by policy_parser_bench (BM_UnknownConnectNames
// must fit O(N)); this test's size, small, is only a backstop.
TEST(ServicePolicyTest, SuggestionsStopOnceNoMoreErrorsAreShown) {
  std::vector<std::string> principals;
  for (int i = 0; i < 4096; ++i) {
    principals.push_back(absl::StrFormat(R"((name="p%063d",match=(uid=1)))", i));
  }
  std::vector<std::string> services;
  for (int s = 0; s < 8; ++s) {
    std::vector<std::string> unknown;
    for (int i = 0; i < 1024; ++i) unknown.push_back(absl::StrFormat(R"("q%063d")", s * 1024 + i));
    services.push_back(absl::StrFormat(R"((name="s%d",command=["/bin/s"],connect=[%s]))", s,
                                       absl::StrJoin(unknown, ",")));
  }
  const std::string text = absl::StrCat("(principals=[", absl::StrJoin(principals, ","),
                                        "],\nservices=[", absl::StrJoin(services, ","), "])");
  ASSERT_LE(text.size(), kMaxPolicyBytes);
  absl::StatusOr<Policy> policy = ParsePolicy(text, "policy.cb");
  ASSERT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  const std::string error(policy.status().message());
  // The errors shown still suggest the name meant.
  EXPECT_THAT(error, HasSubstr(absl::StrFormat(
                         "service 's0': connect names 'q%063d', which is not a principal or "
                         "service in this policy; did you mean 'p%063d'?",
                         0, 0)));
  EXPECT_THAT(error, EndsWith(absl::StrCat("policy.cb: ", 8192 - 20, " more errors not shown")));
}

// Over the limit, the principals are refused whole: one error, not one
// more for each connect name that names one of them.
TEST(ServicePolicyTest, TooManyPrincipalsIsOneError) {
  std::vector<std::string> principals;
  std::vector<std::string> connect;
  for (int i = 0; i < 4097; ++i) {
    principals.push_back(absl::StrFormat(R"((name="p%d",match=(uid=1)))", i));
    if (i < 10) connect.push_back(absl::StrFormat(R"("p%d")", i));
  }
  const std::string text = absl::StrCat(
      "(principals=[", absl::StrJoin(principals, ","),
      "],\nservices=[(name=\"s\",command=[\"/bin/s\"],connect=[", absl::StrJoin(connect, ","),
      "])])");
  EXPECT_THAT(ParsePolicy(text, "policy.cb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "policy.cb:1:13: too many principals: 4097; the limit is 4096"));
}

// Without CAP_SETUID, the kernel lets a broker map only its own uid and gid
// into a service's user namespace: a broker that is not root refuses a
// service `user` or `group` other than its own when it loads the policy, at
// the field, rather than failing every start of the service.
TEST(ServicePolicyTest, ABrokerThatIsNotRootRunsServicesOnlyAsItself) {
  BrokerContext user;
  user.ids = BrokerIds{1000, 1000};
  const std::string other = WithServices(R"(( name = "s", command = [ "/bin/s" ],
                                              user = 1001, group = 1002 ))");
  absl::StatusOr<Policy> refused = ParsePolicy(other, "policy.cb", user);
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(std::string(refused.status().message()),
            "policy.cb:6:54: service 's': user 1001 is not this broker's uid, 1000, and a "
            "broker that is not root can run services only as its own uid and gid (every "
            "start would fail): leave user out (the service then runs as uid 1000), or run "
            "the broker as root\n"
            "policy.cb:6:68: service 's': group 1002 is not this broker's gid, 1000, and a "
            "broker that is not root can run services only as its own uid and gid (every "
            "start would fail): leave group out (the service then runs as gid 1000), or run "
            "the broker as root");

  // Its own ids, or none given: loads.
  EXPECT_OK(ParsePolicy(WithServices(R"(( name = "s", command = [ "/bin/s" ],
                                          user = 1000, group = 1000 ))"),
                        "policy.cb", user)
                .status());
  EXPECT_OK(ParsePolicy(WithServices(R"(( name = "s", command = [ "/bin/s" ] ))"), "policy.cb",
                        user)
                .status());
  // A root broker runs a service as any uid but 0; not known (capctl
  // policy check): not checked.
  BrokerContext root;
  root.ids = BrokerIds{0, 0};
  EXPECT_OK(ParsePolicy(other, "policy.cb", root).status());
  EXPECT_OK(ParsePolicy(other, "policy.cb").status());
}

TEST(ServicePolicyTest, ServicesSharePrincipalNames) {
  // The principal 'ops' is defined at line 4, column 27 (its name).
  EXPECT_EQ(ErrorFor(R"(( name = "ops", command = [ "/bin/s" ] ))"),
            "policy.cb:5:25: service 'ops' has the name of principal 'ops' (at line 4, "
            "column 27); principals and services share one name space: rename one");
  // Two services of one name are defined twice.
  EXPECT_THAT(ErrorFor(R"(( name = "s", command = [ "/bin/s" ] ),
                          ( name = "s", command = [ "/bin/s" ] ))"),
              HasSubstr("service 's' is defined twice (first at line 5, column 25)"));
}

TEST(ServicePolicyTest, ConnectMayNameALaterService) {
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(WithServices(R"(( name = "a", command = [ "/bin/a" ], connect = [ "b" ] ),
                                  ( name = "b", command = [ "/bin/b" ] ))"),
                  "policy.cb"));
  Identity b{65534, 65534, 7, "", "b"};
  EXPECT_OK(policy.DecideConnect(b, "a").status);
  EXPECT_THAT(policy.DecideConnect(b, "b").status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("service 'b' does not list 'b' in connect")));
}

TEST(ServicePolicyTest, ConnectDecisions) {
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(WithServices(R"(( name = "scanner",
      command = [ "/bin/s" ], grants = [ "db", "data" ], connect = [ "ops" ] ))"),
                                                  "policy.cb"));
  Identity ops{1000, 1000, 42, "/usr/bin/x", ""};
  ConnectDecision ok = policy.DecideConnect(ops, "scanner");
  ASSERT_OK(ok.status);
  EXPECT_EQ(ok.principal, "ops");
  EXPECT_EQ(ok.service, &policy.services()[0]);

  Identity stranger{1001, 1001, 43, "/usr/bin/x", ""};
  EXPECT_THAT(policy.DecideConnect(stranger, "scanner").status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("does not list any principal matching uid=1001")));
  EXPECT_THAT(policy.DecideConnect(ops, "nope").status,
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no service named 'nope'")));
}

TEST(ServicePolicyTest, AServiceActsOnlyAsItself) {
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(WithServices(R"(( name = "scanner",
      command = [ "/bin/s" ], grants = [ "data" ] ))"),
                                                  "policy.cb"));
  // Runs as uid 1000, which principal 'ops' matches; that gives it nothing.
  Identity scanner{1000, 1000, 5, "/bin/s", "scanner"};
  EXPECT_TRUE(policy.MatchingPrincipals(scanner).empty());
  EXPECT_THAT(policy.Decide(scanner, "db", Access::READ).status,
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("service 'scanner' is not granted 'db'")));
  Decision data = policy.Decide(scanner, "data", Access::UNSPECIFIED);
  ASSERT_OK(data.status);
  EXPECT_EQ(data.principal, "scanner");
  EXPECT_EQ(data.access, Access::READ_WRITE);
  EXPECT_THAT(policy.PrincipalNames(scanner), ::testing::ElementsAre("scanner"));
}

}  // namespace
}  // namespace capbroker

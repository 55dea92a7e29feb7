#include "broker/policy/starter_policy.h"

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "broker/policy/policy.h"
#include "broker/policy/policy_parser.h"
#include "broker/policy/schema_path.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/policy.capnp.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

TEST(StarterPolicyTest, LoadsWithoutError) {
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(StarterPolicyText(), "starter.cb"));
  EXPECT_EQ(policy.capabilities().size(), 3u);
  EXPECT_EQ(policy.principals().size(), 2u);
  Identity ops{1000, 1000, 1, "/usr/bin/cat", ""};
  EXPECT_OK(policy.Decide(ops, "spool", schema::Access::READ_WRITE).status);
  Identity other{1001, 1001, 1, "", ""};
  EXPECT_OK(policy.Decide(other, "motd", schema::Access::READ).status);
  EXPECT_FALSE(policy.Decide(other, "scratch", schema::Access::READ).status.ok());
}

// Every field an admin can write appears in the starter policy, with an
// explanation on its line, so the starter doubles as the reference.
TEST(StarterPolicyTest, MentionsEveryField) {
  std::string text(StarterPolicyText());
  for (capnp::StructSchema schema :
       {capnp::Schema::from<policy::Policy>(), capnp::Schema::from<policy::Capability>(),
        capnp::Schema::from<policy::FileCapability>(),
        capnp::Schema::from<policy::DirectoryCapability>(),
        capnp::Schema::from<policy::MemoryCapability>(),
        capnp::Schema::from<policy::Principal>(), capnp::Schema::from<policy::Match>(),
        capnp::Schema::from<policy::Service>(),
        capnp::Schema::from<policy::ResourceLimits>(),
        capnp::Schema::from<policy::Sandbox>()}) {
    for (const std::string& field : WritableFieldNames(schema)) {
      EXPECT_NE(text.find(absl::StrCat(field, " =")), std::string::npos)
          << schema.getShortDisplayName().cStr() << "." << field;
    }
  }
  EXPECT_NE(text.find("# "), std::string::npos);
}

// The starter says what an unbounded service may take, in whole sentences:
// its addressSpace comment once stopped at "by default not".
TEST(StarterPolicyTest, SaysWhatAServiceWithoutMemoryLimitsMayTake) {
  std::string text(StarterPolicyText());
  EXPECT_THAT(text, HasSubstr("# bounded only by this and memoryMax: with neither,\n"));
  EXPECT_THAT(text, HasSubstr("# a service may take all the memory the broker may\n"));
  EXPECT_THAT(text, HasSubstr("# with privateUsers and no pidsMax, else the\n"));
}

// The starter hands `spool` out readWrite: its comment says what that lets
// every grantee do beneath it, as the README's "Open beneath" does (it once
// said only that clients may open files there).
TEST(StarterPolicyTest, SaysWhatReadWriteBeneathADirectoryLetsClientsDo) {
  std::string text(StarterPolicyText());
  EXPECT_THAT(text, HasSubstr("access = readWrite,     # read or readWrite"));
  EXPECT_THAT(text, HasSubstr("# With readWrite, every client granted it may also write and "
                              "truncate\n      # any file beneath it, and create new ones: owned "
                              "by the broker's user\n      # (root, for a system broker), with "
                              "the mode the client asks for, up\n      # to 0777, less the "
                              "broker's umask."));
}

// ---- The commented alternatives, uncommented as the starter says ----

// A broker without --cgroup, and one with a cgroup directory that enables
// both controllers.
BrokerContext NoCgroup() {
  BrokerContext context;
  context.cgroup = sandbox::CgroupParent{};
  return context;
}
BrokerContext WithCgroup() {
  BrokerContext context;
  context.cgroup = sandbox::CgroupParent{"/sys/fs/cgroup/capbroker", true, true, ""};
  return context;
}

std::vector<std::string> LinesOf(absl::string_view text) {
  return absl::StrSplit(text, '\n');
}

// What the starter calls an alternative: a line whose text, after its
// indentation, is "# " and then a field ("gid = ") or a list entry
// ("( name = ").
bool IsAlternative(absl::string_view line) {
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(line);
  if (!absl::ConsumePrefix(&rest, "# ")) return false;
  if (absl::StartsWith(rest, "( name = ")) return true;
  size_t i = 0;
  while (i < rest.size() && absl::ascii_isalpha(rest[i])) ++i;
  return i > 0 && absl::StartsWith(rest.substr(i), " = ");
}

// `line` with its first "# " removed, as the starter tells an admin.
std::string Uncomment(const std::string& line) {
  size_t at = line.find("# ");
  return line.substr(0, at) + line.substr(at + 2);
}

// The indices of the lines of the services example: strictly between the
// "#-services" and "#-end" lines.
std::pair<size_t, size_t> ServicesBlock(const std::vector<std::string>& lines) {
  size_t begin = 0, end = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (absl::StripAsciiWhitespace(lines[i]) == "#-services") begin = i + 1;
    if (absl::StripAsciiWhitespace(lines[i]) == "#-end") end = i;
  }
  EXPECT_LT(begin, end) << "the services example is not marked";
  return {begin, end};
}

// The alternatives of `lines`, outside the lines [skip_begin, skip_end).
std::vector<size_t> Alternatives(const std::vector<std::string>& lines, size_t skip_begin,
                                 size_t skip_end) {
  std::vector<size_t> found;
  for (size_t i = 0; i < lines.size(); ++i) {
    if ((i < skip_begin || i >= skip_end) && IsAlternative(lines[i])) found.push_back(i);
  }
  return found;
}

std::string WithUncommented(std::vector<std::string> lines, const std::vector<size_t>& which) {
  for (size_t i : which) lines[i] = Uncomment(lines[i]);
  return absl::StrJoin(lines, "\n");
}

// The starter with the service example uncommented as its comment says:
// the "# " of every line between the markers, and the `signatures`
// capability it names.
std::vector<std::string> WithServices() {
  std::vector<std::string> lines = LinesOf(StarterPolicyText());
  auto [begin, end] = ServicesBlock(lines);
  for (size_t i = begin; i < end; ++i) {
    EXPECT_TRUE(absl::StartsWith(lines[i], "  # ")) << lines[i];
    lines[i] = "  " + lines[i].substr(4);
  }
  bool named = false;
  for (std::string& line : lines) {
    if (IsAlternative(line) && absl::StrContains(line, "name = \"signatures\"")) {
      line = Uncomment(line);
      named = true;
    }
  }
  EXPECT_TRUE(named) << "the signatures capability the comment names is not there";
  return lines;
}

// The grant each shipped service reads by default (services/*/main.cc,
// services/README.md), unless its command says --grant=NAME.
std::string GrantTheServiceReads(const ServiceSpec& service) {
  for (const std::string& arg : service.command) {
    if (absl::StartsWith(arg, "--grant=")) return arg.substr(8);
  }
  absl::string_view program = service.command[0];
  program = program.substr(program.rfind('/') + 1);
  if (program == "scanner") return "signatures";
  if (program == "kvstore") return "data";
  if (program == "journal") return "log";
  ADD_FAILURE() << "unknown program " << service.command[0];
  return "";
}

void ExpectGrantNamesConsistent(const Policy& policy) {
  for (const ServiceSpec& service : policy.services()) {
    std::vector<std::string> granted;
    for (size_t index : service.grants) granted.push_back(policy.capabilities()[index].name);
    EXPECT_THAT(granted, ::testing::Contains(GrantTheServiceReads(service)))
        << "service '" << service.name << "' would not find its grant and crash-loop";
  }
}

TEST(StarterPolicyTest, EachAlternativeLoadsWhenUncommented) {
  std::vector<std::string> lines = LinesOf(StarterPolicyText());
  auto [begin, end] = ServicesBlock(lines);
  std::vector<size_t> alternatives = Alternatives(lines, begin - 1, end + 1);
  // gid, exe, and the signatures capability, at least.
  EXPECT_GE(alternatives.size(), 3u);
  for (size_t i : alternatives) {
    std::string text = WithUncommented(lines, {i});
    EXPECT_OK(ParsePolicy(text, "starter.cb", NoCgroup()).status()) << lines[i];
  }
  ASSERT_OK_AND_ASSIGN(Policy all, ParsePolicy(WithUncommented(lines, alternatives),
                                               "starter.cb", NoCgroup()));
  const PrincipalSpec& ops = all.principals()[0];
  EXPECT_EQ(ops.uid, 1000u);
  EXPECT_EQ(ops.gid, 1000u);
  EXPECT_EQ(ops.exe, "/usr/bin/cat");
}

// The service example is valid once uncommented as it says, in a broker
// without --cgroup too, and the scanner gets the grant it reads.
TEST(StarterPolicyTest, ServiceExampleLoadsWhenUncommented) {
  std::vector<std::string> lines = WithServices();
  ASSERT_OK_AND_ASSIGN(Policy policy,
                       ParsePolicy(absl::StrJoin(lines, "\n"), "starter.cb", NoCgroup()));
  ASSERT_EQ(policy.services().size(), 1u);
  const ServiceSpec& scanner = policy.services()[0];
  EXPECT_EQ(scanner.command[0], "/usr/local/lib/capbroker/scanner");
  EXPECT_TRUE(scanner.accepts_fds);  // it takes the file to scan as an fd
  EXPECT_FALSE(scanner.user.has_value());
  EXPECT_EQ(scanner.limits.memory_max, 0u);
  // As shown, every limit is its default: the sandbox's 1024 fds and 512
  // processes (0 here), the broker's own for the rest.
  EXPECT_EQ(scanner.limits.open_files, 0u);
  EXPECT_EQ(scanner.limits.address_space, 0u);
  EXPECT_EQ(scanner.limits.processes, 0u);
  EXPECT_EQ(scanner.limits.cpu_seconds, 0u);
  EXPECT_EQ(scanner.protections.restrict_address_families.size(), 1u);
  ExpectGrantNamesConsistent(policy);
}

// The alternatives inside the service example: each loads (memoryMax and
// pidsMax in a broker with a cgroup directory, as their comment says, and
// are refused by one without).
TEST(StarterPolicyTest, ServiceAlternativesLoadWhenUncommented) {
  std::vector<std::string> lines = WithServices();
  auto [begin, end] = ServicesBlock(lines);
  std::vector<size_t> inside;
  for (size_t i : Alternatives(lines, 0, 0)) {
    if (i >= begin && i < end) inside.push_back(i);
  }
  EXPECT_EQ(inside.size(), 5u);  // user, group, memoryMax, pidsMax, addressSpace
  for (size_t i : inside) {
    std::string text = WithUncommented(lines, {i});
    ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(text, "starter.cb", WithCgroup()));
    ExpectGrantNamesConsistent(policy);
    bool cgroup = absl::StrContains(lines[i], "Max =");
    absl::StatusOr<Policy> plain = ParsePolicy(text, "starter.cb", NoCgroup());
    if (cgroup) {
      EXPECT_THAT(plain, StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("needs a cgroup, and this broker has none: start "
                                            "capbrokerd with --cgroup DIR")))
          << lines[i];
    } else {
      EXPECT_OK(plain.status()) << lines[i];
    }
  }
  ASSERT_OK_AND_ASSIGN(Policy all, ParsePolicy(WithUncommented(lines, inside), "starter.cb",
                                               WithCgroup()));
  const ServiceSpec& scanner = all.services()[0];
  EXPECT_EQ(scanner.user, 65534u);
  EXPECT_EQ(scanner.group, 65534u);
  EXPECT_EQ(scanner.limits.memory_max, 268435456u);
  EXPECT_EQ(scanner.limits.pids_max, 64u);
  EXPECT_EQ(scanner.limits.address_space, 1073741824u);
}

// As printed, the starter loads in any broker: nothing in it needs --cgroup.
TEST(StarterPolicyTest, LoadsInABrokerWithoutACgroup) {
  EXPECT_OK(ParsePolicy(StarterPolicyText(), "starter.cb", NoCgroup()).status());
}

// The section of `markdown` under the heading `heading` ("## Installing"),
// up to the next heading of that level; "" when it has none.
std::string Section(const std::string& markdown, absl::string_view heading) {
  size_t begin = markdown.find(absl::StrCat("\n", heading, "\n"));
  if (begin == std::string::npos) return "";
  size_t end = markdown.find("\n## ", begin + 1);
  return markdown.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// Every quoted value that follows `field` (`command = [ "`) in `text`.
std::vector<std::string> QuotedAfter(const std::string& text, const std::string& field) {
  std::vector<std::string> values;
  for (size_t at = text.find(field); at != std::string::npos; at = text.find(field, at + 1)) {
    size_t begin = at + field.size();
    size_t end = text.find('"', begin);
    if (end != std::string::npos) values.push_back(text.substr(begin, end - begin));
  }
  return values;
}

std::string DirName(absl::string_view path) {
  return std::string(path.substr(0, path.rfind('/')));
}

// The starter sends the admin to services/README.md, section "Installing",
// to install the scanner: that section must install each shipped program
// where the starter's example and the README's policy run it (`command`),
// and make the files and directories their capabilities name.
TEST(StarterPolicyTest, ServicesReadmeInstallsWhatThePoliciesName) {
  EXPECT_THAT(std::string(StarterPolicyText()),
              HasSubstr("services/README.md, section\n  # \"Installing\""));
  std::ifstream file("services/README.md");
  ASSERT_TRUE(file.good()) << "services/README.md is not in the test's runfiles";
  std::stringstream readme;
  readme << file.rdbuf();
  const std::string installing = Section(readme.str(), "## Installing");
  ASSERT_FALSE(installing.empty()) << "services/README.md has no \"## Installing\" section";
  const std::string starter = absl::StrJoin(WithServices(), "\n");
  std::vector<std::string> commands = QuotedAfter(readme.str(), "command = [ \"");
  std::vector<std::string> paths = QuotedAfter(readme.str(), "path = \"");
  for (const std::string& command : QuotedAfter(starter, "command = [ \"")) {
    commands.push_back(command);
  }
  // Of the starter's capability paths, only the scanner's database is the
  // services' to install (motd and spool are the admin's own examples).
  paths.push_back("/usr/local/share/capbroker/signatures.txt");
  EXPECT_THAT(starter, HasSubstr(absl::StrCat("path = \"", paths.back(), "\"")));
  EXPECT_GE(commands.size(), 4u);  // the README's three and the starter's scanner
  for (const std::string& command : commands) {
    SCOPED_TRACE(command);
    std::string program = command.substr(command.rfind('/') + 1);
    EXPECT_THAT(installing,
                HasSubstr(absl::StrCat("bazel-bin/services/", program, "/", program, " ")));
    EXPECT_THAT(installing, HasSubstr(absl::StrCat(" ", DirName(command), "/\n")));
  }
  EXPECT_GE(paths.size(), 4u);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    EXPECT_THAT(installing, HasSubstr(absl::StrCat(" ", DirName(path))));
  }
  EXPECT_THAT(installing, HasSubstr("services/scanner/signatures.txt /usr/local/share/capbroker/\n"));
  EXPECT_THAT(installing, HasSubstr("-o 65534 -g 65534 /var/lib/capbroker/kvstore\n"));
}

}  // namespace
}  // namespace capbroker

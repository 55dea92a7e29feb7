#include "broker/policy/policy_parser.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "broker/policy/list_sizes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using schema::Access;

// The example from the design, exactly as written.
constexpr absl::string_view kExample = R"(( capabilities = [
    ( name = "motd",    file = ( path = "/etc/motd", access = read ) ),
    ( name = "spool",   directory = ( path = "/var/spool/demo", access = readWrite ) ),
    ( name = "scratch", memory = ( size = 65536 ) ) ],
  principals = [
    ( name = "ops", match = ( uid = 1000 ), grants = [ "motd", "spool", "scratch" ] ) ] ))";

// "policy.cb:LINE:COL" of the first `marker` in `text` (ASCII), counted
// independently of TextLocator.
std::string At(absl::string_view text, absl::string_view marker) {
  size_t offset = text.find(marker);
  EXPECT_NE(offset, absl::string_view::npos) << marker;
  absl::string_view before = text.substr(0, offset);
  size_t line = 1 + std::count(before.begin(), before.end(), '\n');
  size_t line_start = before.rfind('\n');
  size_t column = line_start == absl::string_view::npos ? offset + 1 : offset - line_start;
  return absl::StrCat("policy.cb:", line, ":", column);
}

// The message of the error ParsePolicy gives for `text` (kInvalidArgument).
std::string ErrorFor(absl::string_view text) {
  absl::StatusOr<Policy> policy = ParsePolicy(text, "policy.cb");
  EXPECT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_)) << text;
  return std::string(policy.status().message());
}

TEST(ParsePolicyTest, LoadsTheExampleExactly) {
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(kExample, "policy.cb"));
  EXPECT_EQ(policy.source(), "policy.cb");
  ASSERT_EQ(policy.capabilities().size(), 3u);

  const CapabilitySpec& motd = policy.capabilities()[0];
  EXPECT_EQ(motd.name, "motd");
  EXPECT_EQ(motd.kind, Kind::kFile);
  EXPECT_EQ(motd.path, "/etc/motd");
  EXPECT_EQ(motd.access, Access::READ);
  EXPECT_FALSE(motd.create);
  EXPECT_FALSE(motd.truncate);
  EXPECT_FALSE(motd.follow_symlinks);
  EXPECT_EQ(motd.mode, 0600u);  // the schema default

  const CapabilitySpec& spool = policy.capabilities()[1];
  EXPECT_EQ(spool.name, "spool");
  EXPECT_EQ(spool.kind, Kind::kDirectory);
  EXPECT_EQ(spool.path, "/var/spool/demo");
  EXPECT_EQ(spool.access, Access::READ_WRITE);
  EXPECT_FALSE(spool.follow_symlinks);

  const CapabilitySpec& scratch = policy.capabilities()[2];
  EXPECT_EQ(scratch.name, "scratch");
  EXPECT_EQ(scratch.kind, Kind::kMemory);
  EXPECT_EQ(scratch.size, 65536u);
  EXPECT_FALSE(scratch.shared);
  EXPECT_EQ(scratch.access, Access::READ_WRITE);  // memory is always readWrite
  EXPECT_EQ(scratch.path, "");

  ASSERT_EQ(policy.principals().size(), 1u);
  const PrincipalSpec& ops = policy.principals()[0];
  EXPECT_EQ(ops.name, "ops");
  EXPECT_EQ(ops.uid, 1000u);
  EXPECT_FALSE(ops.gid.has_value());
  EXPECT_EQ(ops.exe, "");
  EXPECT_FALSE(ops.any_user);
  EXPECT_THAT(ops.grants, ElementsAre(0, 1, 2));

  EXPECT_EQ(policy.FindCapability("spool"), &policy.capabilities()[1]);
  Decision decision = policy.Decide(Identity{1000, 1000, 1, "/usr/bin/cat", ""}, "motd",
                                    Access::UNSPECIFIED);
  EXPECT_OK(decision.status);
  EXPECT_EQ(decision.access, Access::READ);
}

TEST(ParsePolicyTest, EveryFieldIsRead) {
  constexpr absl::string_view kText = R"(
    ( capabilities = [
        ( name = "log", file = ( path = "/var/log/x.log", access = append, create = true,
                                 mode = 0640, truncate = false, followSymlinks = true ) ),
        ( name = "out", file = ( path = "/tmp/out", access = write, truncate = true,
                                 mode = 0x1a4 ) ),
        ( name = "dir", directory = ( path = "/", access = read, followSymlinks = true ) ),
        ( name = "shm", memory = ( size = 1073741824, shared = true ) ) ],
      principals = [
        ( name = "a-1.b_c", match = ( uid = 0, gid = 4294967294, exe = "/usr/bin/x" ),
          grants = [ "log", "out", ] ),
        ( name = "all", match = ( anyUser = true ), grants = [ "shm" ] ),
        ( name = "none", match = ( gid = 7 ) ), ] ))";
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(kText, "p"));
  const CapabilitySpec& log = policy.capabilities()[0];
  EXPECT_EQ(log.access, Access::APPEND);
  EXPECT_TRUE(log.create);
  EXPECT_EQ(log.mode, 0640u);
  EXPECT_TRUE(log.follow_symlinks);
  EXPECT_EQ(policy.capabilities()[1].mode, 0644u);  // 0x1a4
  EXPECT_TRUE(policy.capabilities()[1].truncate);
  EXPECT_EQ(policy.capabilities()[2].path, "/");
  EXPECT_TRUE(policy.capabilities()[2].follow_symlinks);
  EXPECT_EQ(policy.capabilities()[3].size, uint64_t{1} << 30);
  EXPECT_TRUE(policy.capabilities()[3].shared);
  const PrincipalSpec& first = policy.principals()[0];
  EXPECT_EQ(first.uid, 0u);
  EXPECT_EQ(first.gid, 4294967294u);
  EXPECT_EQ(first.exe, "/usr/bin/x");
  EXPECT_THAT(first.grants, ElementsAre(0, 1));
  EXPECT_TRUE(policy.principals()[1].any_user);
  EXPECT_TRUE(policy.principals()[2].grants.empty());
}

TEST(ParsePolicyTest, EmptyStructIsAPolicyThatGrantsNothing) {
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy("# nothing yet\n()\n", "p"));
  EXPECT_TRUE(policy.capabilities().empty());
  EXPECT_TRUE(policy.principals().empty());
}

TEST(ParsePolicyTest, AdjacentStringsConcatenate) {
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(R"(( capabilities = [ ( name = "mo" "td", memory = ( size = 1 ) ) ] ))", "p"));
  EXPECT_EQ(policy.capabilities()[0].name, "motd");
}

// ---- Syntax and schema errors: the first one, with line and column ----

TEST(ParsePolicyErrorTest, SyntaxError) {
  EXPECT_EQ(ErrorFor("( capabilities = [\n"
                     "    ( name = \"motd\"\n"
                     "      file = ( path = \"/etc/motd\", access = read ) ) ] )"),
            "policy.cb:3:7: syntax error: expected ',' or ')' after the value of 'name', "
            "found 'file'");
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"motd\" ) ]"),
            "policy.cb:1:1: syntax error: '(' is never closed: missing ')'");
}

TEST(ParsePolicyErrorTest, UnknownFieldNamesTheValidFields) {
  EXPECT_EQ(ErrorFor("( capabilities = [\n"
                     "    ( name = \"motd\", file = ( pth = \"/etc/motd\" ) ) ] )"),
            "policy.cb:2:31: unknown field 'pth' in FileCapability (capabilities[0].file); "
            "valid fields: path, access, create, mode, truncate, followSymlinks; "
            "did you mean 'path'?");
  EXPECT_EQ(ErrorFor("\n\n  ( capabilites = [] )"),
            "policy.cb:3:5: unknown field 'capabilites' in Policy; valid fields: "
            "capabilities, principals, services; did you mean 'capabilities'?");
  EXPECT_EQ(ErrorFor("( principals = [ ( name = \"x\", match = ( user = 5 ) ) ] )"),
            "policy.cb:1:42: unknown field 'user' in Match (principals[0].match); "
            "valid fields: uid, gid, exe, anyUser");
}

// Text in any language: an error's excerpt quotes it as it is (before,
// '\xcf\x89\xce\xbc...'), and the column of an error after it on the same
// line counts characters, as an editor's does, not bytes (75, not 80).
TEST(ParsePolicyErrorTest, ExcerptsKeepTextInAnyLanguageAndColumnsCountCharacters) {
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"\xcf\x89\xce\xbc\xce\xad\xce\xb3\xce\xb1\", "
                     "memory = ( size = 4096 ) ), ( name = \"\xce\xa9\", "
                     "memory = ( size = 4096 ) ) ] )"),
            "policy.cb:1:29: capability name '\xcf\x89\xce\xbc\xce\xad\xce\xb3\xce\xb1' is "
            "invalid: use 1 to 64 of A-Z a-z 0-9 _ . -, the first a letter or digit\n"
            "policy.cb:1:75: capability name '\xce\xa9' is invalid: use 1 to 64 of A-Z a-z "
            "0-9 _ . -, the first a letter or digit");
}

TEST(ParsePolicyErrorTest, UnknownEnumValueListsTheValidValues) {
  EXPECT_EQ(ErrorFor("( capabilities = [\n"
                     "  ( name = \"motd\",\n"
                     "    file = ( path = \"/etc/motd\", access = reed ) ) ] )"),
            "policy.cb:3:43: unknown value 'reed' for field 'access' "
            "(capabilities[0].file.access); valid values: read, write, readWrite, append; "
            "did you mean 'read'?");
}

TEST(ParsePolicyErrorTest, BareNamesWhereOtherTypesAreExpected) {
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"x\", file = ( create = yes ) ) ] )"),
            "policy.cb:1:52: field 'create' (capabilities[0].file.create) must be true "
            "or false; found the name 'yes'");
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = motd ) ] )"),
            "policy.cb:1:29: field 'name' (capabilities[0].name) must be a string in "
            "double quotes, e.g. \"motd\"; found the name 'motd' (a string needs double "
            "quotes: \"motd\")");
}

TEST(ParsePolicyErrorTest, WrongType) {
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = 5 ) ] )"),
            "policy.cb:1:29: field 'name' (capabilities[0].name) must be a string in "
            "double quotes, e.g. \"motd\"; found the number 5");
  EXPECT_EQ(ErrorFor("( principals = [\n  ( name = \"x\", grants = \"motd\" ) ] )"),
            "policy.cb:2:26: field 'grants' (principals[0].grants) must be a list in "
            "brackets [ x, y, ... ] whose elements are a string in double quotes, e.g. "
            "\"motd\"; found the string \"motd\"");
  EXPECT_THAT(ErrorFor("( capabilities = ( name = \"x\" ) )"),
              StartsWith("policy.cb:1:18: field 'capabilities' must be a list in "
                         "brackets [ x, y, ... ] whose elements are a Capability in "
                         "parentheses ( field = value, ... ) with fields name, file, "
                         "directory, memory; found a struct ( ... )"));
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"x\", file = ( access = 1 ) ) ] )"),
            "policy.cb:1:52: field 'access' (capabilities[0].file.access) must be one of "
            "read, write, readWrite, append; found the number 1");
  EXPECT_EQ(ErrorFor("( principals = [ ( name = \"x\", grants = [ \"a\", 7 ] ) ] )"),
            "policy.cb:1:48: 'principals[0].grants[1]' must be a string in double quotes, "
            "e.g. \"motd\"; found the number 7");
}

TEST(ParsePolicyErrorTest, OutOfRange) {
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"x\", memory = ( size = -1 ) ) ] )"),
            "policy.cb:1:52: field 'size' (capabilities[0].memory.size) is out of range: "
            "-1 is not a whole number from 0 to 18446744073709551615");
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"x\", file = ( mode = 0x100000000 ) ) ] )"),
            "policy.cb:1:50: field 'mode' (capabilities[0].file.mode) is out of range: "
            "0x100000000 is not a whole number from 0 to 4294967295");
  EXPECT_THAT(ErrorFor("( principals = [ ( match = ( uid = -9223372036854775809 ) ) ] )"),
              StartsWith("policy.cb:1:36: field 'uid' (principals[0].match.uid) is out "
                         "of range"));
}

// uid and gid are Int64 in the schema only so that -1 can stand for "left
// out": an error about their type names the range of an id.
TEST(ParsePolicyErrorTest, IdsNameTheRangeOfAnId) {
  EXPECT_EQ(ErrorFor("( principals = [ ( name = \"x\", match = ( uid = \"1000\" ) ) ] )"),
            "policy.cb:1:48: field 'uid' (principals[0].match.uid) must be a whole number "
            "from 0 to 4294967294 (a uid; leave the field out for the default); found the "
            "string \"1000\"");
  EXPECT_EQ(ErrorFor("( principals = [ ( name = \"x\", match = ( gid = 1.5 ) ) ] )"),
            "policy.cb:1:48: field 'gid' (principals[0].match.gid) must be a whole number "
            "from 0 to 4294967294 (a gid; leave the field out for the default); found the "
            "number 1.5");
  EXPECT_THAT(ErrorFor("( principals = [ ( match = ( uid = -9223372036854775809 ) ) ] )"),
              HasSubstr("is not a whole number from 0 to 4294967294 (a uid;"));
}

TEST(ParsePolicyErrorTest, IntegersBeyond64BitsAreNotWrapped) {
  // TextCodec alone would read this as uid 1.
  EXPECT_EQ(ErrorFor("( principals = [ ( name = \"x\", match = ( uid = 18446744073709551617 ) ) ] )"),
            "policy.cb:1:48: syntax error: malformed number '18446744073709551617': does "
            "not fit in 64 bits");
}

TEST(ParsePolicyErrorTest, FieldGivenTwiceIsRefused) {
  // TextCodec alone keeps the last one silently.
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"x\",\n"
                     "    file = ( path = \"/etc/motd\", access = read, access = readWrite ) ) ] )"),
            "policy.cb:2:49: field 'access' is given twice in FileCapability "
            "(capabilities[0].file) (first at line 2, column 34); give it once");
  EXPECT_THAT(ErrorFor("( capabilities = [], capabilities = [] )"),
              HasSubstr("policy.cb:1:22: field 'capabilities' is given twice in Policy"));
}

// Semantic checks wait until no field is given twice: which one counts is
// the first thing to fix, and each check locating its error would scan
// every repeat. A root giving `services = []` 50,000 times with 100,000
// unknown grants took 7 s (a broker's only thread, at each reload).
TEST(ParsePolicyErrorTest, ARepeatedFieldIsReportedBeforeAnySemanticCheck) {
  EXPECT_EQ(ErrorFor("( services = [], services = [],\n"
                     "  principals = [ ( name = \"p\", grants = [ \"x\" ] ) ] )"),
            "policy.cb:1:18: field 'services' is given twice in Policy (first at line 1, "
            "column 3); give it once");
  std::vector<std::string> repeats(2000, "services = []");
  std::vector<std::string> grants(1000, R"("x")");
  std::vector<std::string> principals(
      2, absl::StrCat(R"((name="p",match=(uid=1),grants=[)", absl::StrJoin(grants, ","),
                      "])"));
  const std::string text = absl::StrCat("( ", absl::StrJoin(repeats, ","),
                                        ", principals = [", absl::StrJoin(principals, ","),
                                        "] )");
  EXPECT_THAT(ErrorFor(text), EndsWith("policy.cb: 1979 more errors not shown"));
}

TEST(ParsePolicyErrorTest, TwoKindsInOneCapabilityAreRefused) {
  EXPECT_EQ(ErrorFor("( capabilities = [ ( name = \"x\", file = ( path = \"/a\", access = read ),\n"
                     "                     memory = ( size = 1 ) ) ] )"),
            "policy.cb:2:22: 'file' and 'memory' are alternatives in Capability "
            "(capabilities[0]): give only one");
}

// ---- Semantic errors: one case each, the whole message ----

struct SemanticCase {
  const char* name;
  const char* text;
  const char* at;  // the error is at the first occurrence of this
  const char* message;
};

class SemanticErrorTest : public ::testing::TestWithParam<SemanticCase> {};

TEST_P(SemanticErrorTest, ReportsTheRuleAtTheValue) {
  const SemanticCase& c = GetParam();
  EXPECT_EQ(ErrorFor(c.text), absl::StrCat(At(c.text, c.at), ": ", c.message));
}

// Helpers to keep the table readable: one capability, or one principal
// granting an existing memory capability "m".
#define CAP(body) "( capabilities = [ ( " body " ) ] )"
#define PRINCIPAL(body)                                              \
  "( capabilities = [ ( name = \"m\", memory = ( size = 1 ) ) ],\n" \
  "  principals = [ ( " body " ) ] )"

INSTANTIATE_TEST_SUITE_P(
    Rules, SemanticErrorTest,
    ::testing::Values(
        SemanticCase{"EmptyName", CAP("name = \"\", memory = ( size = 1 )"),
                     "\"\"",
                     "capability has no name; give name = \"...\""},
        SemanticCase{"MissingName", CAP("memory = ( size = 1 )"),
                     "( memory",
                     "capability has no name; give name = \"...\""},
        SemanticCase{"BadNameChars", CAP("name = \"a b\\n\", memory = ( size = 1 )"),
                     "\"a b",
                     "capability name 'a b\\x0a' is invalid: use 1 to 64 "
                     "of A-Z a-z 0-9 _ . -, the first a letter or digit"},
        SemanticCase{"NameStartingWithDashes", CAP("name = \"--motd\", memory = ( size = 1 )"),
                     "\"--motd",
                     "capability name '--motd' is invalid: a name starts with a letter or "
                     "digit (capctl would read '--motd' as an option)"},
        SemanticCase{"NameThatIsAnOption",
                     "( principals = [ ( name = \"-h\", match = ( uid = 1 ) ) ] )",
                     "\"-h",
                     "principal name '-h' is invalid: a name starts with a letter or "
                     "digit (capctl would read '-h' as an option)"},
        SemanticCase{"NameStartingWithAnUnderscore", CAP("name = \"_m\", memory = ( size = 1 )"),
                     "\"_m",
                     "capability name '_m' is invalid: a name starts with a letter or digit"},
        SemanticCase{"NameTooLong",
                     "( principals = [ ( name = "
                     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", "
                     "match = ( uid = 1 ) ) ] )",
                     "\"aaaa",
                     "principal name "
                     "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is "
                     "invalid: use 1 to 64 of A-Z a-z 0-9 _ . -, the first a letter or digit"},
        SemanticCase{"DuplicateCapability",
                     "( capabilities = [ ( name = \"m\", memory = ( size = 1 ) ),\n"
                     "                   ( name = \"m\", memory = ( size = 2 ) ) ] )",
                     "\"m\", memory = ( size = 2",
                     "capability 'm' is defined twice (first at line 1, "
                     "column 29); names must be unique"},
        SemanticCase{"DuplicatePrincipal",
                     PRINCIPAL("name = \"p\", match = ( uid = 1 ) ), ( name = \"p\", "
                               "match = ( uid = 2 )"),
                     "\"p\", match = ( uid = 2",
                     "principal 'p' is defined twice (first at line 2, "
                     "column 27); names must be unique"},
        SemanticCase{"NoKind", CAP("name = \"x\""),
                     "( name = \"x\"",
                     "capability 'x' has no kind: write file = (...), "
                     "directory = (...) or memory = (...)"},
        SemanticCase{"RelativePath", CAP("name = \"spool\", directory = ( path = \"var/spool\", access = read )"),
                     "\"var/spool\"",
                     "capability 'spool': path must be absolute (start "
                     "with '/')"},
        SemanticCase{"MissingPath", CAP("name = \"f\", file = ( access = read )"),
                     "( access",
                     "capability 'f': path is empty; give an absolute path"},
        SemanticCase{"DotDotPath", CAP("name = \"f\", file = ( path = \"/etc/../shadow\", access = read )"),
                     "\"/etc/../",
                     "capability 'f': path must be normalized: it contains "
                     "a '..' component"},
        SemanticCase{"DotPath", CAP("name = \"f\", file = ( path = \"/etc/./motd\", access = read )"),
                     "\"/etc/./",
                     "capability 'f': path must be normalized: it contains "
                     "a '.' component"},
        SemanticCase{"DoubleSlash", CAP("name = \"f\", file = ( path = \"/etc//motd\", access = read )"),
                     "\"/etc//",
                     "capability 'f': path must be normalized: it contains "
                     "'//'"},
        SemanticCase{"TrailingSlash", CAP("name = \"d\", directory = ( path = \"/srv/\", access = read )"),
                     "\"/srv/\"",
                     "capability 'd': path must not end with '/'"},
        SemanticCase{"NulInPath", CAP("name = \"f\", file = ( path = \"/etc/motd\\0x\", access = read )"),
                     "\"/etc/motd\\0",
                     "capability 'f': path contains a NUL byte"},
        SemanticCase{"FileAccessMissing", CAP("name = \"f\", file = ( path = \"/a\" )"),
                     "( path",
                     "capability 'f': access not given; choose read, write, "
                     "readWrite or append"},
        SemanticCase{"FileAccessUnspecified", CAP("name = \"f\", file = ( path = \"/a\", access = unspecified )"),
                     "unspecified",
                     "capability 'f': access not given; choose read, write, "
                     "readWrite or append"},
        SemanticCase{"CreateNeedsWrite", CAP("name = \"f\", file = ( path = \"/a\", access = read, create = true )"),
                     "true",
                     "capability 'f': create = true needs write, readWrite "
                     "or append access; access is read"},
        SemanticCase{"TruncateNeedsWrite", CAP("name = \"f\", file = ( path = \"/a\", access = append, truncate = true )"),
                     "true",
                     "capability 'f': truncate = true needs write or "
                     "readWrite access; access is append (an append-only grant must not "
                     "destroy contents)"},
        SemanticCase{"DecimalMode", CAP("name = \"f\", file = ( path = \"/a\", access = write, mode = 644 )"),
                     "644",
                     "capability 'f': mode 644 is decimal here (= 01204 "
                     "octal); write modes in octal with a leading 0, e.g. 0644"},
        // 0384 and 09 would be syntax errors (8 and 9 are no octal
        // digits): the value as read is suggested instead, in octal.
        SemanticCase{"DecimalModeWithAn8", CAP("name = \"f\", file = ( path = \"/a\", access = write, mode = 384 )"),
                     "384",
                     "capability 'f': mode 384 is decimal here (= 0600 "
                     "octal); write modes in octal with a leading 0, e.g. 0600"},
        SemanticCase{"DecimalModeWithA9", CAP("name = \"f\", file = ( path = \"/a\", access = write, mode = 9 )"),
                     "9",
                     "capability 'f': mode 9 is decimal here (= 011 "
                     "octal); write modes in octal with a leading 0, e.g. 011"},
        SemanticCase{"ModeBeyond07777", CAP("name = \"f\", file = ( path = \"/a\", access = write, mode = 010644 )"),
                     "010644",
                     "capability 'f': mode 010644 has bits beyond 07777"},
        SemanticCase{"SetuidMode", CAP("name = \"f\", file = ( path = \"/a\", access = write, mode = 04755 )"),
                     "04755",
                     "capability 'f': mode 04755 sets setuid or setgid; a "
                     "created file never gets them"},
        SemanticCase{"SetgidMode", CAP("name = \"f\", file = ( path = \"/a\", access = write, mode = 02755 )"),
                     "02755",
                     "capability 'f': mode 02755 sets setuid or setgid; a "
                     "created file never gets them"},
        SemanticCase{"DirectoryWrite", CAP("name = \"d\", directory = ( path = \"/srv\", access = write )"),
                     "write",
                     "capability 'd': directory access must be read or "
                     "readWrite, not write: the directory itself is always opened "
                     "read-only, and readWrite lets clients open files beneath it for "
                     "write or append"},
        SemanticCase{"DirectoryAccessMissing", CAP("name = \"d\", directory = ( path = \"/srv\" )"),
                     "( path",
                     "capability 'd': access not given; choose read or "
                     "readWrite"},
        SemanticCase{"MemorySizeMissing", CAP("name = \"m\", memory = ( shared = true )"),
                     "( shared",
                     "capability 'm': memory size must be 1 to 1073741824 "
                     "bytes (1 GiB); it is 0 (not given?)"},
        SemanticCase{"MemoryTooBig", CAP("name = \"m\", memory = ( size = 1073741825 )"),
                     "1073741825",
                     "capability 'm': memory size must be 1 to 1073741824 "
                     "bytes (1 GiB); it is 1073741825"},
        SemanticCase{"UnknownGrant",
                     "( capabilities = [ ( name = \"motd\", memory = ( size = 1 ) ) ],\n"
                     "  principals = [ ( name = \"ops\", match = ( uid = 1000 ),\n"
                     "                   grants = [ \"motdd\" ] ) ] )",
                     "\"motdd\"",
                     "principal 'ops' grants 'motdd', which is not a "
                     "capability in this policy; did you mean 'motd'?"},
        SemanticCase{"DuplicateGrant", PRINCIPAL("name = \"p\", match = ( uid = 1 ), grants = [ \"m\", \"m\" ]"),
                     "\"m\" ]",
                     "principal 'p' grants 'm' twice; list it once"},
        SemanticCase{"NoMatch", PRINCIPAL("name = \"x\", grants = [ \"m\" ]"),
                     "( name = \"x\"",
                     "principal 'x' matches nobody: give uid or gid (with exe to "
                     "narrow it), or anyUser = true"},
        SemanticCase{"EmptyMatch", PRINCIPAL("name = \"x\", match = ( )"),
                     "( )",
                     "principal 'x' matches nobody: give uid or gid (with exe to "
                     "narrow it), or anyUser = true"},
        // -1 is the schema's stand-in for "left out"; written, it is no id,
        // and must not silently drop the criterion (gid = -1 with a uid
        // would match any gid).
        SemanticCase{"ExplicitMinusOneUid", PRINCIPAL("name = \"x\", match = ( uid = -1 )"),
                     "-1",
                     "principal 'x': uid -1 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        SemanticCase{"ExplicitMinusOneGid",
                     PRINCIPAL("name = \"x\", match = ( uid = 1000, gid = -1 )"),
                     "-1",
                     "principal 'x': gid -1 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        SemanticCase{"AnyUserFalseIsNoCriterion", PRINCIPAL("name = \"x\", match = ( anyUser = false )"),
                     "( anyUser",
                     "principal 'x' matches nobody: give uid or gid (with exe to "
                     "narrow it), or anyUser = true"},
        SemanticCase{"AnyUserWithOthers", PRINCIPAL("name = \"x\", match = ( gid = 5, anyUser = true )"),
                     "true",
                     "principal 'x': anyUser = true with uid, gid or exe is "
                     "ambiguous (anyUser matches everyone); drop one or the other"},
        SemanticCase{"UidTooBig", PRINCIPAL("name = \"x\", match = ( uid = 4294967295 )"),
                     "4294967295",
                     "principal 'x': uid 4294967295 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        SemanticCase{"GidNegative", PRINCIPAL("name = \"x\", match = ( gid = -5 )"),
                     "-5",
                     "principal 'x': gid -5 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        // '-' and its number may be parted by a comment, whose bytes (an
        // escape sequence, a newline) never reach the message.
        SemanticCase{"MinusAndItsNumberPartedByAComment",
                     PRINCIPAL("name = \"x\", match = ( uid = - # \x1b[31mred\x07\n 5 )"),
                     "- #",
                     "principal 'x': uid -5 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        // -0 reads as 0, root; a negative id is refused whatever it
        // reads as, and named as written.
        SemanticCase{"MinusZeroUid", PRINCIPAL("name = \"x\", match = ( uid = -0 )"),
                     "-0",
                     "principal 'x': uid -0 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        SemanticCase{"MinusZeroHexGid",
                     PRINCIPAL("name = \"x\", match = ( uid = 1000, gid = -0x0 )"),
                     "-0x0",
                     "principal 'x': gid -0x0 is out of range: 0 to "
                     "4294967294 (or leave it out to match any)"},
        // A leading 0 is octal (as for mode): `uid = 01000` would name
        // uid 512, not the user 1000 it seems to; refused, naming both.
        SemanticCase{"OctalUid", PRINCIPAL("name = \"x\", match = ( uid = 01000 )"),
                     "01000",
                     "principal 'x': uid 01000 is octal here (= 512 decimal); write ids "
                     "in decimal, without a leading 0: 1000"},
        SemanticCase{"OctalGid", PRINCIPAL("name = \"x\", match = ( uid = 1000, gid = 0100 )"),
                     "0100",
                     "principal 'x': gid 0100 is octal here (= 64 decimal); write ids "
                     "in decimal, without a leading 0: 100"},
        SemanticCase{"ZeroWrittenTwice", PRINCIPAL("name = \"x\", match = ( gid = 00 )"),
                     "00",
                     "principal 'x': gid 00 is octal here (= 0 decimal); write ids "
                     "in decimal, without a leading 0: 0"},
        // Read as decimal, 37777777777 is out of range: not suggested.
        SemanticCase{"OctalOutOfRangeInDecimal",
                     PRINCIPAL("name = \"x\", match = ( uid = 037777777777 )"), "037777777777",
                     "principal 'x': uid 037777777777 is octal here (= 4294967295 decimal); "
                     "write ids in decimal, without a leading 0"},
        // The sign does not hide the octal reading (nor is -1000 suggested).
        SemanticCase{"NegativeOctal", PRINCIPAL("name = \"x\", match = ( uid = -01000 )"),
                     "-01000",
                     "principal 'x': uid -01000 is octal here (= -512 decimal); write ids "
                     "in decimal, without a leading 0"},
        SemanticCase{"ExeAlone", PRINCIPAL("name = \"x\", match = ( exe = \"/usr/bin/cat\" )"),
                     "\"/usr/bin/cat\"",
                     "principal 'x': exe alone can be borrowed by any user who can run that "
                     "program (connect, then exec it); add uid or gid"},
        SemanticCase{"RelativeExe", PRINCIPAL("name = \"x\", match = ( exe = \"cat\", uid = 1 )"),
                     "\"cat\"",
                     "principal 'x': exe must be absolute (start with '/')"},
        SemanticCase{"EmptyExe", PRINCIPAL("name = \"x\", match = ( exe = \"\", uid = 1 )"),
                     "\"\"",
                     "principal 'x': exe is empty; give an absolute path"},
        SemanticCase{"UnnormalizedExe", PRINCIPAL("name = \"x\", match = ( exe = \"/usr/bin/../bin/cat\", uid = 1 )"),
                     "\"/usr/bin/..",
                     "principal 'x': exe must be normalized: it contains a "
                     "'..' component"}),
    [](const ::testing::TestParamInfo<SemanticCase>& info) { return info.param.name; });

#undef CAP
#undef PRINCIPAL

// What a decimal mode's error suggests is a mode that loads, never a
// syntax error: not 0384 nor 09.
TEST(ParsePolicyErrorTest, ADecimalModeSuggestsAModeThatLoads) {
  for (absl::string_view written : {"600", "644", "384", "9", "18"}) {
    auto file = [](absl::string_view mode) {
      return absl::StrCat("( capabilities = [ ( name = \"f\", file = ( path = \"/a\", "
                          "access = write, mode = ", mode, " ) ) ] )");
    };
    std::string message = ErrorFor(file(written));
    size_t at = message.rfind("e.g. ");
    ASSERT_NE(at, std::string::npos) << message;
    std::string suggested = message.substr(at + 5);
    EXPECT_OK(ParsePolicy(file(suggested), "policy.cb")) << written << " -> " << suggested;
  }
  // No suggestion where the mode meant would be refused too: set-id bits
  // (04755, 02775) or bits beyond 07777 (4096 is 010000; 065535).
  for (absl::string_view written : {"4755", "2775", "4096", "65535"}) {
    std::string message = ErrorFor(absl::StrCat(
        "( capabilities = [ ( name = \"f\", file = ( path = \"/a\", access = write, mode = ",
        written, " ) ) ] )"));
    EXPECT_TRUE(absl::EndsWith(message, "write modes in octal with a leading 0")) << message;
  }
}

TEST(ParsePolicyErrorTest, PathLengthLimit) {
  std::string path = "/" + std::string(4094, 'a');  // 4095 bytes: fine
  std::string text = absl::StrCat("( capabilities = [ ( name = \"f\", file = ( path = \"", path,
                                  "\", access = read ) ) ] )");
  EXPECT_OK(ParsePolicy(text, "p"));
  path += "a";
  text = absl::StrCat("( capabilities = [ ( name = \"f\", file = ( path = \"", path,
                      "\", access = read ) ) ] )");
  EXPECT_EQ(ErrorFor(text),
            "policy.cb:1:50: capability 'f': path is 4096 bytes long; the limit is 4095");
}

TEST(ParsePolicyErrorTest, AllSemanticErrorsAreReportedInTextOrder) {
  std::string message = ErrorFor(
      "( capabilities = [\n"
      "    ( name = \"spool\", directory = ( path = \"/var/spool/\", access = append ) ),\n"
      "    ( name = \"big\", memory = ( size = 0 ) ) ],\n"
      "  principals = [ ( name = \"ops\", grants = [ \"spol\" ] ) ] )");
  std::vector<std::string> lines = absl::StrSplit(message, '\n');
  EXPECT_THAT(lines,
              ElementsAre(StartsWith("policy.cb:2:44: capability 'spool': path must not end"),
                          StartsWith("policy.cb:2:68: capability 'spool': directory access"),
                          StartsWith("policy.cb:3:39: capability 'big': memory size"),
                          StartsWith("policy.cb:4:18: principal 'ops' matches nobody"),
                          "policy.cb:4:45: principal 'ops' grants 'spol', which is not a "
                          "capability in this policy; did you mean 'spool'?"));
}

TEST(ParsePolicyErrorTest, AtMost20ErrorsAreShown) {
  std::string text = "( capabilities = [\n";
  for (int i = 0; i < 30; ++i) absl::StrAppend(&text, "( name = \"c", i, "\" ),\n");
  text += "] )";
  std::vector<std::string> lines = absl::StrSplit(ErrorFor(text), '\n');
  ASSERT_EQ(lines.size(), 21u);
  EXPECT_THAT(lines[0], StartsWith("policy.cb:2:1: capability 'c0' has no kind"));
  EXPECT_EQ(lines[20], "policy.cb: 10 more errors not shown");
}

TEST(ParsePolicyErrorTest, NothingIsHalfLoaded) {
  // Valid capabilities, one bad principal at the very end: the whole policy
  // is refused.
  std::string text = std::string(kExample);
  text.insert(text.rfind(" ] )"), ",\n    ( name = \"bad\", match = ( exe = \"sh\", uid = 1 ) )");
  absl::StatusOr<Policy> policy = ParsePolicy(text, "policy.cb");
  EXPECT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument,
                               "policy.cb:7:37: principal 'bad': exe must be absolute "
                               "(start with '/')"));
}

TEST(ParsePolicyLimitsTest, TooManyCapabilities) {
  std::string text = "( capabilities = [";
  for (int i = 0; i <= 4096; ++i) absl::StrAppend(&text, "(name=\"c", i, "\",memory=(size=1)),");
  text += "], principals = [ ( name = \"p\", match = ( uid = 1 ), grants = [ \"c1\" ] ) ] )";
  // Only the limit is reported, not every grant as unknown.
  EXPECT_EQ(ErrorFor(text),
            "policy.cb:1:18: too many capabilities: 4097; the limit is 4096");
}

TEST(ParsePolicyLimitsTest, TooManyPrincipals) {
  std::string text = "( principals = [";
  for (int i = 0; i <= 4096; ++i) absl::StrAppend(&text, "(name=\"p", i, "\",match=(uid=1)),");
  text += "] )";
  EXPECT_EQ(ErrorFor(text), "policy.cb:1:16: too many principals: 4097; the limit is 4096");
}

TEST(ParsePolicyLimitsTest, TooManyGrants) {
  std::string caps = "capabilities = [";
  std::string grants = "grants = [";
  for (int i = 0; i <= 1024; ++i) {
    absl::StrAppend(&caps, "(name=\"c", i, "\",memory=(size=1)),");
    absl::StrAppend(&grants, "\"c", i, "\",");
  }
  std::string text =
      absl::StrCat("( ", caps, "],\n principals = [ ( name = \"p\", match = ( uid = 1 ), ",
                   grants, "] ) ] )");
  EXPECT_EQ(ErrorFor(text), absl::StrCat(At(text, "[\"c0\""),
                                         ": principal 'p' has 1025 grants; the limit is 1024"));
  // Exactly at the limit is fine.
  text.replace(text.rfind("\"c1024\","), 8, "");
  EXPECT_OK(ParsePolicy(text, "p"));
}

// A list over its limit is refused on the text, before TextCodec decodes
// it (and spends memory on every entry): the error in a field further on,
// which TextCodec would report, is never reached.
TEST(ParsePolicyLimitsTest, ListsAreCountedBeforeDecoding) {
  std::vector<std::string> grants(1025, R"("")");
  std::string text = absl::StrCat("( principals = [ ( name = \"p\", grants = [",
                                  absl::StrJoin(grants, ","), "] ) ],\n  unknown = 1 )");
  EXPECT_EQ(ErrorFor(text), absl::StrCat(At(text, "[\"\""),
                                         ": principal 'p' has 1025 grants; the limit is 1024"));
}

// Any list is counted before decoding, wherever it is: under a field the
// schema does not have (TextCodec would build it whole, then refuse the
// field), or inside a limited list.
TEST(ParsePolicyLimitsTest, AnyLongListIsRefusedBeforeDecoding) {
  std::vector<std::string> entries(4097, "1");
  const std::string list = absl::StrCat("[", absl::StrJoin(entries, ","), "]");
  for (const std::string& text :
       {absl::StrCat("( other = ", list, " )"),
        absl::StrCat("( principals = [ ( name = \"p\", grants = [ ", list, " ] ) ] )")}) {
    EXPECT_THAT(ErrorFor(text), EndsWith("has 4097 entries; no list in a policy may have more "
                                         "than 4096"))
        << text.substr(0, 40);
  }
}

// ---- Hostile input: a clear error, never a crash ----

TEST(ParsePolicyHostileTest, EmptyAndBlank) {
  EXPECT_EQ(ErrorFor(""), "policy.cb:1:1: syntax error: the text is empty; expected one "
                          "struct value: ( field = value, ... )");
  EXPECT_THAT(ErrorFor("\n\n   # just comments\n"), HasSubstr("the text is empty"));
}

TEST(ParsePolicyHostileTest, HugeNesting) {
  EXPECT_THAT(ErrorFor(std::string(500000, '(')),
              StartsWith("policy.cb:1:2: syntax error: expected a field name or ')'"));
  std::string nested;
  for (int i = 0; i < 50000; ++i) nested += "( capabilities = [";
  EXPECT_THAT(ErrorFor(nested), HasSubstr("syntax error: nesting deeper than 32 levels"));
  EXPECT_THAT(ErrorFor("( a = " + std::string(100000, '[') + ")"),
              HasSubstr("nesting deeper than 32 levels"));
}

TEST(ParsePolicyHostileTest, NestingWithinTheLimitReachesTextCodecSafely) {
  std::string text = "( capabilities = [ ( name = ";
  for (int i = 0; i < 25; ++i) text += "[";
  text += std::string(25, ']') + " ) ] )";
  EXPECT_THAT(ErrorFor(text), StartsWith("policy.cb:1:29: field 'name' (capabilities[0].name) "
                                         "must be a string"));
}

TEST(ParsePolicyHostileTest, BinaryGarbage) {
  std::mt19937 random(42);
  for (int round = 0; round < 200; ++round) {
    std::string garbage(1 + random() % 512, '\0');
    for (char& c : garbage) c = static_cast<char>(random());
    absl::StatusOr<Policy> policy = ParsePolicy(garbage, "policy.cb");
    ASSERT_FALSE(policy.ok());
    std::string message(policy.status().message());
    EXPECT_THAT(message, StartsWith("policy.cb:"));
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_LT(message.size(), 400u) << message;
  }
  EXPECT_EQ(ErrorFor("\x7f" "ELF\x02\x01\x01"),
            "policy.cb:1:1: syntax error: unexpected character '\\x7f'");
  EXPECT_EQ(ErrorFor(std::string("(\0)", 3)),
            "policy.cb:1:2: syntax error: NUL byte in the text; a policy is plain text");
}

TEST(ParsePolicyHostileTest, VeryLongStringsGiveShortMessages) {
  std::string huge(1000000, 'x');
  std::string message = ErrorFor(
      absl::StrCat("( capabilities = [ ( name = \"", huge, "\", memory = ( size = 1 ) ) ] )"));
  EXPECT_THAT(message, StartsWith("policy.cb:1:29: capability name 'xxxx"));
  EXPECT_LT(message.size(), 300u);
  message = ErrorFor(absl::StrCat("( capabilities = [ ( name = \"m\", memory = ( size = 1 ) ) ],"
                                  " principals = [ ( name = \"p\", match = ( uid = 1 ),"
                                  " grants = [ \"", huge, "\" ] ) ] )"));
  EXPECT_THAT(message, HasSubstr("which is not a capability in this policy"));
  EXPECT_LT(message.size(), 300u);
}

// An error about a repeated field or name says where the first one is,
// which costs a scan of that one's line: only for the errors shown. On a
// long line, 80,000 repeats of a field each scanned 500 KB (26 s a parse
// here), and names repeated there cost seconds too. The growth itself is
// watched by policy_parser_bench (BM_RepeatsOnALongLine must fit O(N)); the
// test's size, small, is only a backstop. The repeats are as many as
// kMaxPolicyValues allows with the 9 other values of the text.
TEST(ParsePolicyHostileTest, RepeatsOnALongLineAreNotEachLocated) {
  const std::string padding(500000, 'x');
  constexpr size_t kRepeats = kMaxPolicyValues - 9;
  std::vector<std::string> uids(kRepeats, "uid=1");
  const std::string fields = absl::StrCat(R"((principals=[(name="a",match=(uid=1,exe="/)",
                                          padding, R"(")),(name="q",match=()",
                                          absl::StrJoin(uids, ","), "))])");
  std::vector<std::string> principals(4000, R"((name="q",match=(uid=1)))");
  std::vector<std::string> capabilities(4000, R"((name="c",memory=(size=1)))");
  const std::string names = absl::StrCat(
      R"((principals=[(name="a",match=(uid=1,exe="/)", padding, R"(")),)",
      absl::StrJoin(principals, ","), "],capabilities=[", absl::StrJoin(capabilities, ","),
      "])");
  for (int i = 0; i < 4; ++i) {
    ASSERT_LE(fields.size(), kMaxPolicyBytes);
    absl::StatusOr<Policy> policy = ParsePolicy(fields, "policy.cb");
    ASSERT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
    // The errors shown still say where the first one is.
    EXPECT_THAT(policy.status().message(),
                HasSubstr("field 'uid' is given twice in Match (principals[1].match) (first "
                          "at line 1, column 500064); give it once"));
    EXPECT_THAT(std::string(policy.status().message()),
                EndsWith(absl::StrCat("policy.cb: ", kRepeats - 1 - 20,
                                      " more errors not shown")));  // the repeats alone
  }
  ASSERT_LE(names.size(), kMaxPolicyBytes);
  absl::StatusOr<Policy> policy = ParsePolicy(names, "policy.cb");
  ASSERT_THAT(policy, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(policy.status().message(),
              HasSubstr("capability 'c' is defined twice (first at line 1, column "));
  // 3,999 repeats of each name, and the exe's length.
  EXPECT_THAT(std::string(policy.status().message()),
              EndsWith(absl::StrCat("policy.cb: ", 3999 + 3999 + 1 - 20,
                                    " more errors not shown")));
}

// A name refused as invalid is no suggestion: printed raw in a "did you
// mean", a newline split an error in two (capctl counted 5 errors for 4)
// and an escape sequence reached the terminal.
TEST(ParsePolicyHostileTest, AnInvalidNameIsNeverSuggested) {
  const std::string message = ErrorFor(
      R"(( capabilities = [ ( name = "m\x1b[2Jd", memory = ( size = 1 ) ),)"
      R"(                   ( name = "a\nb", memory = ( size = 1 ) ) ],)"
      R"(  principals = [ ( name = "p", match = ( uid = 1 ), grants = [ "mX[2Jd", "ab" ] ) ] ))");
  std::vector<std::string> lines = absl::StrSplit(message, '\n');
  EXPECT_THAT(lines, ElementsAre(HasSubstr("capability name 'm\\x1b[2Jd' is invalid"),
                                 HasSubstr("capability name 'a\\x0ab' is invalid"),
                                 EndsWith("grants 'mX[2Jd', which is not a capability in "
                                          "this policy"),
                                 EndsWith("grants 'ab', which is not a capability in this "
                                          "policy")));
}

TEST(ParsePolicyHostileTest, TextOverTheSizeLimit) {
  std::string text = "( capabilities = [] )" + std::string(kMaxPolicyBytes, ' ');
  EXPECT_THAT(ParsePolicy(text, "policy.cb"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "policy.cb: the policy is 1048597 bytes; the limit is 1048576 "
                       "bytes (1 MiB)"));
}

TEST(ParsePolicyHostileTest, CommentsMayHoldAnything) {
  EXPECT_OK(ParsePolicy("# \xff\xfe \x01 ( [ \" \n( ) # \x80\n", "p"));
}

}  // namespace
}  // namespace capbroker

#include "broker/peer/unmapped_ids.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::peer {
namespace {

using ::capbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Optional;

// The initial user namespace's map, as the kernel writes it.
constexpr char kInitialMap[] = "         0          0 4294967295\n";

// What IdMapHas says of `id` in `map`: "mapped", "unmapped" or its error.
std::string Answer(absl::string_view map, uint32_t id) {
  absl::StatusOr<bool> has = IdMapHas(map, id, "uid_map");
  if (!has.ok()) return has.status().ToString();
  return *has ? "mapped" : "unmapped";
}

TEST(IdMapHasTest, TheInitialNamespaceMapsEveryId) {
  for (uint32_t id : {0u, 65534u, 4294967294u}) {
    EXPECT_EQ(Answer(kInitialMap, id), "mapped") << id;
  }
}

// `unshare -U --map-root-user` as root: one id.
TEST(IdMapHasTest, AMapOfRootAloneDoesNotMapTheOverflowId) {
  EXPECT_EQ(Answer("         0          0          1\n", 0), "mapped");
  EXPECT_EQ(Answer("         0          0          1\n", 65534), "unmapped");
}

// Ranges are looked up each, and each ends before its first id + length.
TEST(IdMapHasTest, SeveralRanges) {
  const std::string map = "0 1000 1\n1 100000 65533\n65535 200000 10\n";
  EXPECT_EQ(Answer(map, 0), "mapped");
  EXPECT_EQ(Answer(map, 65533), "mapped");
  EXPECT_EQ(Answer(map, 65534), "unmapped");
  EXPECT_EQ(Answer(map, 65535), "mapped");
  EXPECT_EQ(Answer(map, 65545), "unmapped");
  // The last id there is: a range may end at 2^32.
  EXPECT_EQ(Answer("4294967295 0 1", 4294967295u), "mapped");
}

// Blanks and tabs around and between the numbers, blank lines and a last
// line without its newline read the same.
TEST(IdMapHasTest, WhitespaceIsNoMatter) {
  EXPECT_EQ(Answer("\t 65534\t\t0   1  \n\n  \n", 65534), "mapped");
  EXPECT_EQ(Answer("0 0 1\n65534 7 1", 65534), "mapped");
}

// A namespace whose map is not written yet maps nothing.
TEST(IdMapHasTest, AnEmptyMapMapsNothing) {
  EXPECT_EQ(Answer("", 0), "unmapped");
  EXPECT_EQ(Answer("\n", 65534), "unmapped");
}

TEST(IdMapHasTest, TextThatIsNoMapIsRefusedNamingTheLine) {
  for (const char* line : {"0 0", "0 0 1 1", "a b c", "0 0 0", "-1 0 1", "+1 0 1", "0x1 0 1",
                           "01 0 1", "4294967296 0 1", "4294967295 0 2", "0 4294967295 2",
                           "0 0 4294967297", "0 0 18446744073709551616", "0,0,1",
                           "0 0 1\x01"}) {
    EXPECT_THAT(IdMapHas(absl::StrCat("0 0 1\n", line, "\n"), 65534, "/proc/self/uid_map"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("/proc/self/uid_map line 2 is not an id range"),
                               HasSubstr("within 32 bits")))) << line;
  }
  // Control bytes are shown escaped.
  EXPECT_THAT(IdMapHas("0 0 1\x01\n", 1, "uid_map"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'0 0 1\\x01'")));
}

// Id files as the kernel writes them, in a directory of the test's.
class ReadUnmappedIdsTest : public ::testing::Test {
 protected:
  // Writes the four files; `uid_map` and `gid_map` as given.
  IdFiles Write(const std::string& uid_map, const std::string& gid_map,
                const std::string& overflow_uid = "65534\n",
                const std::string& overflow_gid = "65534\n") {
    uid_map_ = dir_.WriteFile("uid_map", uid_map);
    gid_map_ = dir_.WriteFile("gid_map", gid_map);
    overflow_uid_ = dir_.WriteFile("overflowuid", overflow_uid);
    overflow_gid_ = dir_.WriteFile("overflowgid", overflow_gid);
    return IdFiles{uid_map_.c_str(), gid_map_.c_str(), overflow_uid_.c_str(),
                   overflow_gid_.c_str()};
  }

  TempDir dir_;
  std::string uid_map_, gid_map_, overflow_uid_, overflow_gid_;
};

TEST_F(ReadUnmappedIdsTest, TheInitialNamespaceHasNone) {
  ASSERT_OK_AND_ASSIGN(UnmappedIds unmapped, ReadUnmappedIds(Write(kInitialMap, kInitialMap)));
  EXPECT_EQ(unmapped.uid, std::nullopt);
  EXPECT_EQ(unmapped.gid, std::nullopt);
}

// Each map against its own overflow id, which the administrator may set.
TEST_F(ReadUnmappedIdsTest, EachOverflowIdNotMappedIsUnmapped) {
  ASSERT_OK_AND_ASSIGN(UnmappedIds unmapped,
                       ReadUnmappedIds(Write("0 0 1\n", "0 0 1\n1 1 65534\n", "65000\n")));
  EXPECT_THAT(unmapped.uid, Optional(65000u));
  EXPECT_EQ(unmapped.gid, std::nullopt);  // 65534 is in 1..65534
}

TEST_F(ReadUnmappedIdsTest, WhatCannotBeReadStopsTheStartNamingTheFile) {
  IdFiles files = Write("0 0 1\n", "0 0 1\n", "sixty\n");
  EXPECT_THAT(ReadUnmappedIds(files), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr(overflow_uid_)));
  files = Write("0 0 1\n", "0 0 1\n0 0\n");
  EXPECT_THAT(ReadUnmappedIds(files),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat(gid_map_, " line 2 is not an id range"))));
  files = Write(std::string(20000, ' '), "0 0 1\n");
  EXPECT_THAT(ReadUnmappedIds(files), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("more than 16384 bytes")));
  const std::string missing = dir_.Join("missing");
  files.uid_map = missing.c_str();
  EXPECT_THAT(ReadUnmappedIds(files), StatusIs(absl::StatusCode::kNotFound,
                                               HasSubstr(missing)));
}

// What SO_PEERCRED gave (socketpair: this process) against unmapped ids.
TEST(CheckIdsMappedTest, APeerWithAnUnmappedOverflowIdIsRefusedSayingWhy) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_OK_AND_ASSIGN(Credentials credentials, PeerCredentials(pair.first.get()));
  EXPECT_OK(CheckIdsMapped(credentials, UnmappedIds{}));
  EXPECT_OK(CheckIdsMapped(credentials, UnmappedIds{geteuid() + 1, getegid() + 1}));
  EXPECT_THAT(CheckIdsMapped(credentials, UnmappedIds{geteuid(), std::nullopt}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("its uid is not mapped into the broker's user namespace"),
                             HasSubstr(absl::StrCat("overflow uid ", geteuid())),
                             HasSubstr("run the broker in the initial user namespace or map "
                                       "the user"))));
  EXPECT_THAT(CheckIdsMapped(credentials, UnmappedIds{std::nullopt, getegid()}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("its gid is not mapped into the broker's user namespace"),
                             HasSubstr("or map the group"))));
}

// The reviewer's case, in one process: a peer of another uid (a socketpair
// made as uid 61001), seen from a user namespace that maps root alone, as
// `unshare -U --map-root-user` run as root makes. SO_PEERCRED says 65534
// (the overflow uid), ReadUnmappedIds finds it unmapped, and the peer is
// refused. Root's gid is mapped, and its group is no one else's there.
TEST(CheckIdsMappedTest, InAUserNamespaceMappingRootAloneAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a socket as another uid";
  testing::ChildResult child = testing::RunInChild([]() -> std::string {
    if (setresuid(-1, 61001, -1) != 0) return absl::StrCat("setresuid: ", strerror(errno));
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
    if (setresuid(-1, 0, -1) != 0) return absl::StrCat("setresuid back: ", strerror(errno));
    if (!pair.ok()) return pair.status().ToString();
    if (unshare(CLONE_NEWUSER) != 0) return absl::StrCat("unshare: ", strerror(errno));
    for (auto [file, text] : {std::pair{"/proc/self/setgroups", "deny"},
                              std::pair{"/proc/self/uid_map", "0 0 1"},
                              std::pair{"/proc/self/gid_map", "0 0 1"}}) {
      UniqueFd fd(open(file, O_WRONLY | O_CLOEXEC));
      if (!fd.valid() || write(fd.get(), text, strlen(text)) < 0) {
        return absl::StrCat(file, ": ", strerror(errno));
      }
    }
    absl::StatusOr<UnmappedIds> unmapped = ReadUnmappedIds();
    if (!unmapped.ok()) return unmapped.status().ToString();
    absl::StatusOr<Credentials> credentials = PeerCredentials(pair->first.get());
    if (!credentials.ok()) return credentials.status().ToString();
    return absl::StrCat("uid=", credentials->uid(), " gid=", credentials->gid(),
                        " unmapped uid=", unmapped->uid.value_or(0),
                        " gid=", unmapped->gid.value_or(0), " ",
                        CheckIdsMapped(*credentials, *unmapped).ToString());
  });
  ASSERT_TRUE(WIFEXITED(child.wait_status) && WEXITSTATUS(child.wait_status) == 0);
  EXPECT_THAT(child.output,
              AllOf(HasSubstr("uid=65534 gid=0 unmapped uid=65534 gid=65534 "),
                    HasSubstr("FAILED_PRECONDITION: its uid is not mapped into the broker's user "
                              "namespace")));
}

}  // namespace
}  // namespace capbroker::peer

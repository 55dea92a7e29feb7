#include "broker/peer/unmapped_ids.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

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

// Rootless podman's: the user's own uid (1000) as root, and 65536
// subordinate uids from /etc/subuid, 65534 among them.
constexpr char kPodmanMap[] =
    "         0       1000          1\n         1     100000      65536\n";

// What IdMapCoversEveryId says of `map`: "every id", "not every id" or its
// error.
std::string Answer(absl::string_view map) {
  absl::StatusOr<bool> every_id = IdMapCoversEveryId(map, "uid_map");
  if (!every_id.ok()) return every_id.status().ToString();
  return *every_id ? "every id" : "not every id";
}

TEST(IdMapCoversEveryIdTest, TheInitialNamespaceMapsEveryId) {
  EXPECT_EQ(Answer(kInitialMap), "every id");
  // The last id there is too: a range may end at 2^32.
  EXPECT_EQ(Answer("0 0 4294967296"), "every id");
}

// `unshare -U --map-root-user` as root: one id.
TEST(IdMapCoversEveryIdTest, AMapOfRootAloneDoesNot) {
  EXPECT_EQ(Answer("         0          0          1\n"), "not every id");
}

// Rootless podman's map includes 65534, yet every host user it leaves out
// reads as 65534 too: that is not every id.
TEST(IdMapCoversEveryIdTest, RootlessPodmansMapDoesNot) {
  EXPECT_EQ(Answer(kPodmanMap), "not every id");
}

// Ranges in any order, each ending before its first id + length; the map
// covers every id only without a gap, the last id, 4294967294, included.
TEST(IdMapCoversEveryIdTest, SeveralRanges) {
  EXPECT_EQ(Answer("0 0 1\n1 100000 65533\n65534 1 4294901761\n"), "every id");
  EXPECT_EQ(Answer("65534 1 4294901761\n1 100000 65533\n0 0 1\n"), "every id");
  EXPECT_EQ(Answer("0 0 1\n2 100000 65532\n65534 1 4294901761\n"), "not every id");  // 1
  EXPECT_EQ(Answer("0 0 1\n1 100000 65533\n65534 1 4294901760\n"),
            "not every id");  // 4294967294
  EXPECT_EQ(Answer("1 1 4294967294\n"), "not every id");  // 0
  // Overlaps the kernel would not take do not hide a gap.
  EXPECT_EQ(Answer("0 0 10\n5 5 10\n3 3 2\n16 16 4294967279\n"), "not every id");  // 15
  EXPECT_EQ(Answer("0 0 10\n5 5 11\n3 3 2\n16 16 4294967279\n"), "every id");
}

// Blanks and tabs around and between the numbers, blank lines and a last
// line without its newline read the same.
TEST(IdMapCoversEveryIdTest, WhitespaceIsNoMatter) {
  EXPECT_EQ(Answer("\t 1\t\t1   4294967294  \n\n  \n0 0 1"), "every id");
}

// A namespace whose map is not written yet maps nothing.
TEST(IdMapCoversEveryIdTest, AnEmptyMapMapsNothing) {
  EXPECT_EQ(Answer(""), "not every id");
  EXPECT_EQ(Answer("\n"), "not every id");
}

TEST(IdMapCoversEveryIdTest, TextThatIsNoMapIsRefusedNamingTheLine) {
  for (const char* line : {"0 0", "0 0 1 1", "a b c", "0 0 0", "-1 0 1", "+1 0 1", "0x1 0 1",
                           "01 0 1", "4294967296 0 1", "4294967295 0 2", "0 4294967295 2",
                           "0 0 4294967297", "0 0 18446744073709551616", "0,0,1",
                           "0 0 1\x01"}) {
    EXPECT_THAT(IdMapCoversEveryId(absl::StrCat("0 0 1\n", line, "\n"), "/proc/self/uid_map"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("/proc/self/uid_map line 2 is not an id range"),
                               HasSubstr("within 32 bits")))) << line;
  }
  // Control bytes are shown escaped.
  EXPECT_THAT(IdMapCoversEveryId("0 0 1\x01\n", "uid_map"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'0 0 1\\x01'")));
}

// The kernel takes at most 340 ranges; a map of more is no map of its.
TEST(IdMapCoversEveryIdTest, MoreRangesThanTheKernelTakesAreRefused) {
  std::string map;
  for (int i = 0; i < 340; ++i) absl::StrAppend(&map, i, " ", i, " 1\n");
  EXPECT_EQ(Answer(map), "not every id");
  absl::StrAppend(&map, "340 340 4294966955\n");
  EXPECT_THAT(IdMapCoversEveryId(map, "uid_map"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("uid_map holds more than 340 id ranges")));
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

// Each map with its own overflow id, which the administrator may set.
TEST_F(ReadUnmappedIdsTest, EachOverflowIdOfAMapNotCoveringEveryIdIsUnmapped) {
  ASSERT_OK_AND_ASSIGN(UnmappedIds unmapped,
                       ReadUnmappedIds(Write("0 0 1\n", "1 1 4294967294\n0 0 1\n", "65000\n")));
  EXPECT_THAT(unmapped.uid, Optional(65000u));
  EXPECT_EQ(unmapped.gid, std::nullopt);  // every gid, in two ranges
}

// Rootless podman's maps include 65534, and yet a peer reading as 65534
// may be any host user they leave out.
TEST_F(ReadUnmappedIdsTest, RootlessPodmansOverflowIdsAreUnmapped) {
  ASSERT_OK_AND_ASSIGN(UnmappedIds unmapped, ReadUnmappedIds(Write(kPodmanMap, kPodmanMap)));
  EXPECT_THAT(unmapped.uid, Optional(65534u));
  EXPECT_THAT(unmapped.gid, Optional(65534u));
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
  // A map that is there but cannot be read (a directory): only a missing
  // one means a kernel without user namespaces.
  files = Write("0 0 1\n", "0 0 1\n");
  files.gid_map = dir_.path().c_str();
  EXPECT_THAT(ReadUnmappedIds(files), StatusIs(absl::StatusCode::kFailedPrecondition,
                                               HasSubstr(absl::StrCat("read ", dir_.path()))));
}

// A kernel without user namespaces (CONFIG_USER_NS) has no id maps, and
// its one namespace maps every id: nothing is unmapped, and the overflow
// sysctls are not read.
TEST_F(ReadUnmappedIdsTest, NoMapsIsTheInitialNamespace) {
  const std::string uid_map = dir_.Join("uid_map"), gid_map = dir_.Join("gid_map"),
                    overflow_uid = dir_.Join("overflowuid"),
                    overflow_gid = dir_.Join("overflowgid");
  ASSERT_OK_AND_ASSIGN(UnmappedIds unmapped,
                       ReadUnmappedIds(IdFiles{uid_map.c_str(), gid_map.c_str(),
                                               overflow_uid.c_str(), overflow_gid.c_str()}));
  EXPECT_EQ(unmapped.uid, std::nullopt);
  EXPECT_EQ(unmapped.gid, std::nullopt);
}

// With /proc mounted subset=pid (systemd's ProcSubset=pid) there is no
// /proc/sys. A broker whose maps cover every id does not need it and
// starts; one whose map is partial does, and says why and what to do.
TEST_F(ReadUnmappedIdsTest, TheOverflowSysctlsAreNeededOnlyForAPartialMap) {
  IdFiles files = Write(kInitialMap, "1 1 4294967294\n0 0 1\n");
  const std::string missing_uid = dir_.Join("sys/kernel/overflowuid");
  const std::string missing_gid = dir_.Join("sys/kernel/overflowgid");
  files.overflow_uid = missing_uid.c_str();
  files.overflow_gid = missing_gid.c_str();
  ASSERT_OK_AND_ASSIGN(UnmappedIds unmapped, ReadUnmappedIds(files));
  EXPECT_EQ(unmapped.uid, std::nullopt);
  EXPECT_EQ(unmapped.gid, std::nullopt);

  files.gid_map = uid_map_.c_str();  // full
  const std::string partial = dir_.WriteFile("partial_map", kPodmanMap);
  files.uid_map = partial.c_str();
  EXPECT_THAT(ReadUnmappedIds(files),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("open ", missing_uid)),
                             HasSubstr(absl::StrCat("the broker's user namespace does not map "
                                                    "every uid (", partial, ")")),
                             HasSubstr("which the broker must know to refuse clients with it"),
                             HasSubstr("subset=pid (systemd's ProcSubset=pid)"),
                             HasSubstr("give the broker a full /proc (ProcSubset=all)"))));
  files.uid_map = uid_map_.c_str();  // full
  files.gid_map = partial.c_str();
  EXPECT_THAT(ReadUnmappedIds(files),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("open ", missing_gid)),
                             HasSubstr("does not map every gid"))));
}

// What SO_PEERCRED gave (socketpair: this process) against unmapped ids.
TEST(CheckIdsMappedTest, APeerWithAnUnmappedOverflowIdIsRefusedSayingWhy) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_OK_AND_ASSIGN(Credentials credentials, PeerCredentials(pair.first.get()));
  EXPECT_OK(CheckIdsMapped(credentials, UnmappedIds{}));
  EXPECT_OK(CheckIdsMapped(credentials, UnmappedIds{geteuid() + 1, getegid() + 1}));
  EXPECT_THAT(CheckIdsMapped(credentials, UnmappedIds{geteuid(), std::nullopt}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat(
                                 "its uid ", geteuid(),
                                 " cannot be told apart from users the broker's user namespace "
                                 "does not map")),
                             HasSubstr(absl::StrCat("overflow uid ", geteuid())),
                             HasSubstr(absl::StrCat("even the namespace's own uid ", geteuid())),
                             HasSubstr("run the broker in the initial user namespace or in one "
                                       "that maps every uid, or map the client's user"))));
  EXPECT_THAT(CheckIdsMapped(credentials, UnmappedIds{std::nullopt, getegid()}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("cannot be told apart from groups the broker's user "
                                       "namespace does not map"),
                             HasSubstr("or map the client's group"))));
}

// What a peer of another uid (a socketpair made as uid 61001, gid 0) looks
// like from a new user namespace whose uid and gid maps are `map`, written
// as newuidmap or `unshare --map-root-user` would (by a process outside
// it, with the privilege to write any map): its ids as SO_PEERCRED gives
// them, the unmapped ids ReadUnmappedIds finds there, and what
// CheckIdsMapped says. Needs root.
std::string SeenFromANamespaceMapping(const char* map) {
  testing::ChildResult child = testing::RunInChild([map]() -> std::string {
    if (setresuid(-1, 61001, -1) != 0) return absl::StrCat("setresuid: ", strerror(errno));
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
    if (setresuid(-1, 0, -1) != 0) return absl::StrCat("setresuid back: ", strerror(errno));
    if (!pair.ok()) return pair.status().ToString();
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return absl::StrCat("pipe2: ", strerror(errno));
    UniqueFd unshared_read(ends[0]), unshared_write(ends[1]);
    const pid_t writer = fork();
    if (writer < 0) return absl::StrCat("fork: ", strerror(errno));
    if (writer == 0) {
      // Outside the namespace: waits for it, writes its maps.
      unshared_write.reset();
      char byte;
      if (read(unshared_read.get(), &byte, 1) != 1) _exit(1);
      for (const char* file : {"uid_map", "gid_map"}) {
        UniqueFd fd(open(absl::StrCat("/proc/", getppid(), "/", file).c_str(),
                         O_WRONLY | O_CLOEXEC));
        if (!fd.valid() || write(fd.get(), map, strlen(map)) < 0) _exit(2);
      }
      _exit(0);
    }
    unshared_read.reset();
    std::string failed;
    if (unshare(CLONE_NEWUSER) != 0) failed = absl::StrCat("unshare: ", strerror(errno));
    // End of file, without the byte, tells the writer to give up.
    if (failed.empty() && write(unshared_write.get(), "u", 1) != 1) failed = "write";
    unshared_write.reset();
    int status = 0;
    if (waitpid(writer, &status, 0) != writer) return absl::StrCat("waitpid: ", strerror(errno));
    if (!failed.empty()) return failed;
    if (status != 0) return absl::StrCat("writing the maps: wait status ", status);
    absl::StatusOr<UnmappedIds> unmapped = ReadUnmappedIds();
    if (!unmapped.ok()) return unmapped.status().ToString();
    absl::StatusOr<Credentials> credentials = PeerCredentials(pair->first.get());
    if (!credentials.ok()) return credentials.status().ToString();
    auto shown = [](std::optional<uint32_t> id) {
      return id.has_value() ? absl::StrCat(*id) : "none";
    };
    return absl::StrCat("uid=", credentials->uid(), " gid=", credentials->gid(),
                        " unmapped uid=", shown(unmapped->uid), " gid=", shown(unmapped->gid),
                        " ", CheckIdsMapped(*credentials, *unmapped).ToString());
  });
  if (!WIFEXITED(child.wait_status) || WEXITSTATUS(child.wait_status) != 0) {
    return absl::StrCat("the child ended with wait status ", child.wait_status);
  }
  return child.output;
}

// The first reviewer's case: a namespace that maps root alone, as
// `unshare -U --map-root-user` run as root makes. SO_PEERCRED says 65534
// (the overflow uid), which the namespace does not map, and the peer is
// refused. Root's gid is mapped, and its group is no one else's there.
TEST(CheckIdsMappedTest, InAUserNamespaceMappingRootAloneAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a socket as another uid";
  EXPECT_THAT(SeenFromANamespaceMapping("0 0 1"),
              AllOf(HasSubstr("uid=65534 gid=0 unmapped uid=65534 gid=65534 "),
                    HasSubstr("FAILED_PRECONDITION: its uid 65534 cannot be told apart from "
                              "users the broker's user namespace does not map")));
}

// The second: rootless podman's map, which includes 65534 (the namespace
// has a user of that number), yet leaves out uid 61001 of the host, which
// reads as 65534 all the same. Refused (the namespace's own 65534 would
// be too: nothing tells them apart).
TEST(CheckIdsMappedTest, InRootlessPodmansUserNamespaceAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a socket as another uid";
  EXPECT_THAT(SeenFromANamespaceMapping(kPodmanMap),
              AllOf(HasSubstr("uid=65534 gid=65534 unmapped uid=65534 gid=65534 "),
                    HasSubstr("FAILED_PRECONDITION: its uid 65534 cannot be told apart from "
                              "users the broker's user namespace does not map")));
}

// A namespace that maps every id, as the initial one does: each user is
// itself there, and none is refused.
TEST(CheckIdsMappedTest, InAUserNamespaceMappingEveryIdAnotherUserIsServed) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a socket as another uid";
  EXPECT_EQ(SeenFromANamespaceMapping("0 0 1\n1 1 4294967294\n"),
            "uid=61001 gid=0 unmapped uid=none gid=none OK");
}

}  // namespace
}  // namespace capbroker::peer

#include "services/kvstore/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <new>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/syscall_filter.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::kvstore {
namespace {

using ::capbroker::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// While set, every allocation leaves errno at ENOMEM, as glibc's malloc
// may do when it succeeds (a failed sbrk that an mmap made up for).
bool g_allocations_set_errno = false;

class StoreTest : public ::testing::Test {
 protected:
  absl::StatusOr<Store> OpenStore(Store::Options options = Store::Options()) {
    return Store::Open(UniqueFd(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
                       kDefaultGrant, options);
  }
  bool Exists(const std::string& name) { return access(dir_.Join(name).c_str(), F_OK) == 0; }
  std::vector<std::string> Entries() {
    std::vector<std::string> names;
    DIR* d = opendir(dir_.path().c_str());
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    }
    closedir(d);
    return names;
  }

  TempDir dir_;
};

TEST_F(StoreTest, PutGetDeleteList) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  EXPECT_THAT(store.Get("a"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(store.Put("b", "2"));
  ASSERT_OK(store.Put("a", "1"));
  ASSERT_OK(store.Put(std::string("\0bin", 4), ""));
  ASSERT_OK_AND_ASSIGN(std::string a, store.Get("a"));
  EXPECT_EQ(a, "1");
  EXPECT_THAT(store.keys(), ElementsAre(std::string("\0bin", 4), "a", "b"));
  EXPECT_EQ(store.size(), 3u);
  ASSERT_OK(store.Delete("a"));
  EXPECT_THAT(store.Delete("a"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store.Get("a"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(store.size(), 2u);
}

TEST_F(StoreTest, SurvivesReopening) {
  {
    ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
    ASSERT_OK(store.Put("k", "v1"));
    ASSERT_OK(store.Put("k", "v2"));
    ASSERT_OK(store.Put("gone", "x"));
    ASSERT_OK(store.Delete("gone"));
  }
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  EXPECT_EQ(store.size(), 1u);
  ASSERT_OK_AND_ASSIGN(std::string v, store.Get("k"));
  EXPECT_EQ(v, "v2");
}

TEST_F(StoreTest, ACrashMidPutLeavesTheOldValueAndNoTrace) {
  {
    ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
    ASSERT_OK(store.Put("k", "acknowledged"));
  }
  // What a crash can leave: a half-written temporary file, and a complete
  // one whose rename never happened.
  dir_.WriteFile("t.123.half", "new val", 0600);
  dir_.WriteFile("t.456.full", "new value", 0600);
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  ASSERT_OK_AND_ASSIGN(std::string v, store.Get("k"));
  EXPECT_EQ(v, "acknowledged");
  EXPECT_THAT(store.keys(), ElementsAre("k"));
  EXPECT_THAT(Entries(), ElementsAre("k.6b"));
}

TEST_F(StoreTest, OverwriteReplacesTheFileAtomicallyAndLeavesNoTemporary) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  ASSERT_OK(store.Put("k", "old"));
  // A reader holding the old file keeps reading the old value whole: the
  // new one arrives as a new inode by rename, never by rewriting in place.
  UniqueFd reader(open(dir_.Join("k.6b").c_str(), O_RDONLY | O_CLOEXEC));
  struct stat before {};
  ASSERT_EQ(fstat(reader.get(), &before), 0);
  ASSERT_OK(store.Put("k", "new and longer"));
  char buf[16] = {};
  EXPECT_EQ(pread(reader.get(), buf, sizeof(buf), 0), 3);
  EXPECT_EQ(std::string(buf, 3), "old");
  struct stat after {};
  ASSERT_EQ(stat(dir_.Join("k.6b").c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  ASSERT_OK_AND_ASSIGN(std::string v, store.Get("k"));
  EXPECT_EQ(v, "new and longer");
  EXPECT_THAT(Entries(), ElementsAre("k.6b"));  // no temporary left
}

TEST_F(StoreTest, KeysCannotEscapeTheDirectory) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  ASSERT_OK(store.Put("../escape", "x"));
  ASSERT_OK(store.Put("/etc/passwd", "x"));
  EXPECT_FALSE(Exists("../escape"));
  EXPECT_TRUE(Exists("k.2e2e2f657363617065"));
}

TEST_F(StoreTest, LimitsAndStrangeFilesAreRefused) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  EXPECT_THAT(store.Put("k", std::string(kMaxValueBytes + 1, 'v')),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("value of 32769 bytes")));
  EXPECT_OK(store.Put("k", std::string(kMaxValueBytes, 'v')));
  EXPECT_THAT(store.Put("", "v"), StatusIs(absl::StatusCode::kInvalidArgument));
  // Whatever someone else put under a key's name is not followed or waited on.
  ASSERT_EQ(symlink("/etc/passwd", dir_.Join("k.73").c_str()), 0);
  EXPECT_THAT(store.Get("s"), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_EQ(mkfifo(dir_.Join("k.66").c_str(), 0600), 0);
  EXPECT_THAT(store.Get("f"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("FIFO")));
  dir_.WriteFile("k.62", std::string(kMaxValueBytes + 1, 'b'));
  EXPECT_THAT(store.Get("b"), StatusIs(absl::StatusCode::kResourceExhausted));
}

// A value past the file size limit (RLIMIT_FSIZE, which a service inherits
// from the broker) is a quota, as a full disk is: kResourceExhausted, with
// the old value kept and no temporary file left. SIGXFSZ is ignored, as
// Service::FromEnvironment does; the limit is lowered in a child, so that
// it does not reach the test's own process.
TEST_F(StoreTest, AValuePastTheFileSizeLimitIsAQuota) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  ASSERT_OK(store.Put("k", "old"));
  EXPECT_EQ(::capbroker::testing::ExitCodeInChild([&] {
              if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR) return 1;
              rlimit limit{};
              if (getrlimit(RLIMIT_FSIZE, &limit) != 0) return 2;
              limit.rlim_cur = 100;
              if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
              absl::Status put = store.Put("k", std::string(1000, 'v'));
              if (put.code() != absl::StatusCode::kResourceExhausted) return 4;
              if (!absl::StrContains(put.message(), "file size limit (RLIMIT_FSIZE)")) return 5;
              absl::StatusOr<std::string> kept = store.Get("k");
              if (!kept.ok() || *kept != "old") return 6;
              return 0;
            }),
            0);
  EXPECT_THAT(Entries(), ElementsAre("k.6b"));
}

// When the directory's fsync fails after the rename or the unlink, the
// change was made: the answer says so, kDataLoss rather than the errno's
// kUnavailable (EIO), which would invite a blind retry. The fsync fails by
// a seccomp filter acting on the directory's fd alone, in a child.
TEST_F(StoreTest, AFailedSyncAfterTheChangeSaysTheChangeWasMade) {
  UniqueFd dir(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  const int raw = dir.get();
  ASSERT_OK_AND_ASSIGN(Store store, Store::Open(std::move(dir), "kv-data"));
  ASSERT_OK(store.Put("k", "old"));
  EXPECT_EQ(::capbroker::testing::ExitCodeInChild([&] {
              const ::capbroker::testing::SyscallFilter failing_fsync(
                  SYS_fsync, 0, static_cast<uint32_t>(raw), SECCOMP_RET_ERRNO | EIO);
              if (failing_fsync.Install(false) != 0) return 1;
              absl::Status put = store.Put("k", "new");
              if (put.code() != absl::StatusCode::kDataLoss) return 2;
              if (put.message() !=
                  "the new value is in place but may not survive a crash: "
                  "fsync(kv-data directory): Input/output error") {
                return 3;
              }
              absl::StatusOr<std::string> value = store.Get("k");
              if (!value.ok() || *value != "new") return 4;
              absl::Status deleted = store.Delete("k");
              if (deleted.code() != absl::StatusCode::kDataLoss) return 5;
              if (!absl::StartsWith(deleted.message(),
                                    "the key is removed but may come back after a crash: "
                                    "fsync(kv-data directory)")) {
                return 6;
              }
              if (store.Get("k").status().code() != absl::StatusCode::kNotFound) return 7;
              if (!store.keys().empty()) return 8;
              return 0;
            }),
            0);
  EXPECT_THAT(Entries(), IsEmpty());
}

TEST_F(StoreTest, OneStorePerDirectory) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  EXPECT_THAT(OpenStore(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("another kvstore holds")));
}

TEST_F(StoreTest, RefusesAFileForADirectory) {
  EXPECT_THAT(Store::Open(UniqueFd(open(dir_.WriteFile("f", "").c_str(), O_RDONLY | O_CLOEXEC))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a directory")));
}

// A store at its limit of keys refuses a new one, clearly, and changes
// nothing: every key it holds can still be read, changed and deleted, and
// a delete makes room again.
TEST_F(StoreTest, ANewKeyBeyondTheLimitIsRefusedAndServingGoesOn) {
  Store::Options options;
  options.max_keys = 2;
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore(options));
  ASSERT_OK(store.Put("a", "1"));
  ASSERT_OK(store.Put("b", "2"));
  EXPECT_THAT(store.Put("c", "3"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("the store is full: it holds 2 keys, its limit is 2; delete a "
                                 "key to put a new one")));
  EXPECT_THAT(store.Get("c"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store.keys(), ElementsAre("a", "b"));
  EXPECT_THAT(Entries(), UnorderedElementsAre("k.61", "k.62"));  // no temporary
  ASSERT_OK(store.Put("a", "changed"));
  ASSERT_OK_AND_ASSIGN(std::string a, store.Get("a"));
  EXPECT_EQ(a, "changed");
  ASSERT_OK(store.Delete("b"));
  ASSERT_OK(store.Put("c", "3"));
  EXPECT_THAT(store.keys(), ElementsAre("a", "c"));
}

// A directory holding more key files than the store's limit (copied in,
// a backup restored into it) is refused at start, saying what to move
// out, rather than served: a client would refuse its every list, and
// every new key would be refused. The files are left as they were.
TEST_F(StoreTest, RefusesADirectoryWithMoreKeyFilesThanItsLimit) {
  Store::Options options;
  options.max_keys = 2;
  dir_.WriteFile(KeyFileName("a"), "1");
  dir_.WriteFile(KeyFileName("b"), "2");
  {
    ASSERT_OK_AND_ASSIGN(Store store, OpenStore(options));  // at the limit: served
    EXPECT_THAT(store.keys(), ElementsAre("a", "b"));
  }
  dir_.WriteFile(KeyFileName("c"), "3");
  EXPECT_THAT(OpenStore(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("data holds more than 2 key files (k.*), this kvstore's limit "
                                 "of keys: move key files out of the directory until at most 2 "
                                 "are left")));
  EXPECT_THAT(Entries(), UnorderedElementsAre("k.61", "k.62", "k.63"));
}

// Reading the directory tells its end from a failure by errno alone, and
// what runs between two reads allocates (a key's entry): an allocation
// that leaves errno set is no readdir error.
TEST_F(StoreTest, AnAllocationThatLeavesErrnoSetIsNoReaddirError) {
  dir_.WriteFile(KeyFileName("a"), "1");
  dir_.WriteFile(KeyFileName("b"), "2");
  g_allocations_set_errno = true;
  absl::StatusOr<Store> store = OpenStore();
  g_allocations_set_errno = false;
  ASSERT_OK(store.status());
  EXPECT_THAT(store->keys(), ElementsAre("a", "b"));
}

// Entries a store never makes are bounded too, so that a directory filled
// with other files cannot make Open read without end. Temporary files
// count with them ("." and ".." do not).
TEST_F(StoreTest, RefusesADirectoryWithMoreOtherEntriesThanItsLimit) {
  dir_.WriteFile(KeyFileName("a"), "1");
  for (size_t i = 0; i + 1 < kMaxOtherEntries; ++i) dir_.WriteFile(absl::StrCat("other", i), "");
  dir_.WriteFile("t.123.half", "", 0600);
  {
    ASSERT_OK_AND_ASSIGN(Store store, OpenStore());  // at the limit: served
    EXPECT_THAT(store.keys(), ElementsAre("a"));
  }
  EXPECT_FALSE(Exists("t.123.half"));
  dir_.WriteFile("t.123.half", "", 0600);
  dir_.WriteFile("one.more", "");
  EXPECT_THAT(OpenStore(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr(absl::StrCat("data holds more than ",
                                                           kMaxOtherEntries,
                                                           " entries that are not key files"))));
}

TEST_F(StoreTest, RefusesALimitOfKeysAboveWhatAClientLists) {
  Store::Options options;
  options.max_keys = kMaxKeys + 1;
  EXPECT_THAT(OpenStore(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 100000")));
}

// Messages name the directory by its grant, as the service's command
// names it (--grant=NAME), not by the default "data".
TEST_F(StoreTest, MessagesNameTheGrant) {
  EXPECT_THAT(
      Store::Open(UniqueFd(open(dir_.WriteFile("f", "").c_str(), O_RDONLY | O_CLOEXEC)),
                  "kv-data"),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("kv-data: not a directory")));
  ASSERT_OK_AND_ASSIGN(
      Store store,
      Store::Open(UniqueFd(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
                  "kv-data"));
  EXPECT_THAT(Store::Open(UniqueFd(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
                          "kv-data"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("kv-data: another kvstore holds this directory")));
  ASSERT_EQ(symlink("elsewhere", dir_.Join(KeyFileName("link")).c_str()), 0);
  EXPECT_THAT(store.Get("link"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("kv-data/", KeyFileName("link"),
                                              ": a symbolic link"))));
}

// The keys are kept in memory: after any sequence of puts and deletes they
// are what the directory holds, in order, as a new Store reading the
// directory finds them.
TEST_F(StoreTest, TheKeysFollowPutsAndDeletes) {
  std::set<std::string> expected;
  {
    ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
    uint32_t state = 1;
    for (int i = 0; i < 300; ++i) {
      state = state * 1103515245 + 12345;  // a fixed sequence, drawn from 40 keys
      const std::string key = absl::StrCat("key", (state >> 16) % 40);
      if ((state >> 8) % 3 == 0) {
        EXPECT_EQ(store.Delete(key).ok(), expected.erase(key) == 1) << key;
      } else {
        ASSERT_OK(store.Put(key, "v"));
        expected.insert(key);
      }
      ASSERT_EQ(store.keys(), expected) << "after step " << i;
    }
    ASSERT_OK(store.Put(std::string("\xff", 1), "v"));  // bytewise: after every other
    ASSERT_OK(store.Put(std::string("\x01", 1), "v"));
    expected.insert({std::string("\xff", 1), std::string("\x01", 1)});
    EXPECT_EQ(*store.keys().rbegin(), std::string("\xff", 1));
    EXPECT_EQ(store.keys(), expected);
    EXPECT_EQ(store.size(), expected.size());
  }
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  EXPECT_EQ(store.keys(), expected);
}

TEST_F(StoreTest, EmptyStoreListsNothing) {
  ASSERT_OK_AND_ASSIGN(Store store, OpenStore());
  EXPECT_THAT(store.keys(), IsEmpty());
}

}  // namespace
}  // namespace capbroker::kvstore

// Replaced for AnAllocationThatLeavesErrnoSetIsNoReaddirError; as the
// library's otherwise.
void* operator new(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  if (capbroker::kvstore::g_allocations_set_errno) errno = ENOMEM;
  return p;
}
// These frees pair with the malloc above, which GCC cannot see from here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

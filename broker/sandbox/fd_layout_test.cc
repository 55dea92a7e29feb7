#include "broker/sandbox/fd_layout.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::RunInChildWithFd;
using ::testing::ElementsAre;

// "fd:inode:cloexec" for every open fd but the listing's own.
std::string DescribeFdTable() {
  std::vector<std::string> parts;
  DIR* dir = opendir("/proc/self/fd");
  int own = dirfd(dir);
  std::vector<int> fds;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.' && atoi(entry->d_name) != own) fds.push_back(atoi(entry->d_name));
  }
  closedir(dir);
  std::sort(fds.begin(), fds.end());
  for (int fd : fds) {
    struct stat st;
    fstat(fd, &st);
    parts.push_back(absl::StrCat(fd, ":", st.st_ino, (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? ":ce" : ""));
  }
  return absl::StrJoin(parts, " ");
}

ino_t Inode(int fd) {
  struct stat st;
  fstat(fd, &st);
  return st.st_ino;
}

TEST(FdLayoutTest, PlacesSourcesInOrderEvenWhenTheyOverlapTheTargets) {
  std::string result = RunInChildWithFd([](int* out_fd) -> std::string {
    // Sources sitting on each other's targets: a wants 0, b wants 1, c
    // wants 2 and 3, and b already is fd 0 and a fd 3.
    int p[2], q[2];
    if (pipe(p) != 0 || pipe(q) != 0) return "pipe failed";
    for (int fd = 0; fd < 3; ++fd) close(fd);
    int b = dup2(p[0], 0);
    int a = dup2(p[1], 3);
    int c = q[0];
    int keep = q[1];
    ino_t ib = Inode(b), ic = Inode(c), ik = Inode(keep);
    absl::StatusOr<std::vector<int>> kept = ApplyFdLayout({a, b, c, c}, {keep, *out_fd});
    if (kept.ok()) *out_fd = (*kept)[1];
    bool a_at_0 = (fcntl(0, F_GETFL) & O_ACCMODE) == O_WRONLY;
    bool b_at_1 = (fcntl(1, F_GETFL) & O_ACCMODE) == O_RDONLY;
    if (!kept.ok()) return kept.status().ToString();
    // a and b are two ends of one pipe (one inode): check fd 0 is an fd
    // of it and that the pipe's read end, b, was not lost (fd 1).
    return absl::StrCat(DescribeFdTable(), " | kept ", (*kept)[0] > 3 ? "above" : "inside",
                        Inode((*kept)[0]) == ik ? " same" : " other",
                        a_at_0 && b_at_1 && Inode(0) == ib && Inode(1) == ib && Inode(2) == ic && Inode(3) == ic
                            ? " ok" : " wrong");
  }).output;
  // 0..3 without close-on-exec, the kept fds with it (the second is the
  // test's own pipe), nothing else.
  EXPECT_THAT(result, ::testing::MatchesRegex(
                          "0:[0-9]+ 1:[0-9]+ 2:[0-9]+ 3:[0-9]+ [0-9]+:[0-9]+:ce [0-9]+:[0-9]+:ce "
                          "\\| kept above same ok"))
      << result;
}

TEST(FdLayoutTest, ClosesEverythingElse) {
  std::string result = RunInChildWithFd([](int* out_fd) -> std::string {
    int high = fcntl(0, F_DUPFD, 100);  // without close-on-exec
    int devnull = open("/dev/null", O_RDONLY);
    absl::StatusOr<std::vector<int>> kept = ApplyFdLayout({devnull, devnull, devnull}, {*out_fd});
    if (!kept.ok()) return kept.status().ToString();
    *out_fd = (*kept)[0];
    return absl::StrCat(fcntl(high, F_GETFD) == -1 ? "closed" : "open", " ",
                        fcntl(4, F_GETFD) == -1 ? "closed" : "open", " ",
                        fcntl(2, F_GETFD) == 0 ? "placed" : "missing");
  }).output;
  EXPECT_EQ(result, "closed closed placed");
}

TEST(FdLayoutTest, Environment) {
  EXPECT_THAT(ServiceEnvironment({"A=1"}, {"x", "y"}, 5, 1),
              ElementsAre("A=1", "LISTEN_FDS=2", "LISTEN_PID=1", "LISTEN_FDNAMES=x:y",
                          "CAPBROKER_FD=5"));
  EXPECT_THAT(ServiceEnvironment({"A=1"}, {}, -1, 1), ElementsAre("A=1"));
  EXPECT_THAT(ServiceEnvironment({}, {}, 3, 42), ElementsAre("CAPBROKER_FD=3"));
  EXPECT_EQ(ReservedVariableIn({"A=1", "LISTEN_FDS=3"}), "LISTEN_FDS");
  EXPECT_EQ(ReservedVariableIn({"CAPBROKER_FD=1"}), "CAPBROKER_FD");
  EXPECT_EQ(ReservedVariableIn({"LISTEN_FDSX=1", "A=LISTEN_PID=1"}), "");
}

}  // namespace
}  // namespace capbroker::sandbox

#include "broker/peer/peer_identity.h"

#include <sys/wait.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_count.h"

namespace capbroker::peer {
namespace {

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf));
  return n > 0 ? std::string(buf, n) : "";
}

TEST(IdentifyPeerTest, IdentifiesALiveProcessWithoutLeakingThePidfd) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  int before = testing::CountOpenFds();
  ASSERT_OK_AND_ASSIGN(Identity id, IdentifyPeer(pair.first.get()));
  EXPECT_EQ(testing::CountOpenFds(), before);
  EXPECT_EQ(id.uid, getuid());
  EXPECT_EQ(id.gid, getgid());
  EXPECT_EQ(id.pid, getpid());
  EXPECT_EQ(id.exe, SelfExe());
}

TEST(IdentifyPeerTest, ExitedPeerHasNoExe) {
  // A child makes a socketpair (so its pid is the pair's credentials), sends
  // one end to us and exits: its pid is on the socket but can no longer be
  // verified, and may even have been reused.
  ASSERT_OK_AND_ASSIGN(auto carrier, wire::SeqpacketPair());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto pair = wire::SeqpacketPair();
    uint64_t word = 0;
    iovec iov{&word, sizeof(word)};
    bool ok = pair.ok() &&
              wire::SendDatagram(carrier.second.get(), &iov, 1,
                                 {pair->second.get()}).ok();
    _exit(ok ? 0 : 1);
  }
  int status;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  wire::ReceiveBuffer buffer;
  ASSERT_OK_AND_ASSIGN(auto datagram,
                       wire::ReceiveDatagram(carrier.first.get(), buffer));
  ASSERT_TRUE(datagram.has_value());
  ASSERT_EQ(datagram->fds.size(), 1u);
  ASSERT_OK_AND_ASSIGN(Identity id, IdentifyPeer(datagram->fds[0].get()));
  EXPECT_EQ(id.pid, child);
  EXPECT_EQ(id.exe, "");
}

TEST(IdentifyPeerTest, BadFdFails) {
  EXPECT_THAT(IdentifyPeer(-1), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace capbroker::peer

#include "tests/hostile/hostile_fixture.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "gmock/gmock.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/raw_send.h"

namespace capbroker::hostile {
namespace {

constexpr char kPolicy[] = R"(
( capabilities = [
    ( name = "motd", file = ( path = "$DIR/motd", access = read ) ) ],
  principals = [
    ( name = "tester", match = ( uid = $UID ), grants = [ "motd" ] ) ] )
)";
constexpr char kMotd[] = "hostile clients welcome\n";

}  // namespace

size_t InQueue(int fd) {
  int n = 0;
  EXPECT_EQ(ioctl(fd, SIOCINQ, &n), 0);
  return static_cast<size_t>(n);
}

bool HungUp(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) != 0;
}

void HostileTest::StartBroker(testing::BrokerOptions options) {
  ASSERT_OK_AND_ASSIGN(broker_, testing::BrokerProcess::StartWith(kPolicy, std::move(options)));
  std::string path = broker_->dir() + "/motd";
  UniqueFd motd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(motd.valid()) << std::strerror(errno);
  ASSERT_EQ(write(motd.get(), kMotd, sizeof(kMotd) - 1),
            static_cast<ssize_t>(sizeof(kMotd) - 1));
  ASSERT_OK_AND_ASSIGN(client_, Client::Connect(broker_->socket_path()));
  // The hello round trip is done: the broker holds the good connection.
  baseline_fds_ = broker_->OpenFds();
  ASSERT_GT(baseline_fds_, 0);
}

UniqueFd HostileTest::Connect() {
  absl::StatusOr<UniqueFd> fd = wire::ConnectSeqpacket(broker_->socket_path());
  EXPECT_OK(fd.status());
  return fd.ok() ? std::move(fd).value() : UniqueFd();
}

int HostileTest::Send(int fd, absl::Span<const uint8_t> bytes,
                      absl::Span<const int> fds, int flags) {
  return testing::RawSend(fd, bytes, fds, flags);
}

UniqueFd HostileTest::ConnectAndHello() {
  UniqueFd fd = Connect();
  EXPECT_EQ(Send(fd.get(), HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  RawReply reply = Receive(fd.get());
  EXPECT_FALSE(reply.hung_up);
  EXPECT_EQ(reply.id, 1u);
  EXPECT_EQ(reply.which, schema::Reply::HELLO) << reply.message;
  return fd;
}

void HostileTest::ExpectError(int fd, uint64_t id, schema::ErrorCode code,
                              absl::string_view why) {
  RawReply reply = Receive(fd);
  ASSERT_FALSE(reply.hung_up) << "expected an error reply, got a hang-up";
  ASSERT_FALSE(reply.timed_out);
  EXPECT_EQ(reply.which, schema::Reply::ERROR);
  EXPECT_EQ(reply.id, id);
  EXPECT_EQ(reply.code, code) << reply.message;
  EXPECT_THAT(reply.message, ::testing::HasSubstr(std::string(why)));
  EXPECT_EQ(reply.fds.size(), 0u);
}

void HostileTest::ExpectHangUp(int fd) {
  RawReply reply = Receive(fd);
  EXPECT_TRUE(reply.hung_up) << "expected a hang-up, got a reply: "
                             << reply.message;
}

void HostileTest::ExpectGoodClientWorks() {
  absl::StatusOr<Capability> motd = client_->Acquire("motd");
  ASSERT_OK(motd.status());
  char buf[64];
  ssize_t n = pread(motd->fd.get(), buf, sizeof(buf), 0);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), kMotd);
}

}  // namespace capbroker::hostile

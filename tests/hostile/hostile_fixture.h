// HostileTest: a real capbrokerd, a well-behaved SDK client, and helpers for
// a raw connection that sends whatever bytes and fds a test wants.
//
// Every hostile test follows one shape: record the broker's fd count with
// the good client connected, misbehave on a raw connection, check the reply
// or the hang-up, close the raw connection, then check that the good client
// still gets a capability and that the broker's fd count is back to the
// baseline. Waits are on events (replies, readiness), never on time.
#ifndef CAPBROKER_TESTS_HOSTILE_HOSTILE_FIXTURE_H_
#define CAPBROKER_TESTS_HOSTILE_HOSTILE_FIXTURE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "capnp/message.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_baseline.h"
#include "tests/fixtures/raw_reply.h"
#include "tests/fixtures/request_bytes.h"

namespace capbroker::hostile {

using testing::RawReply;
using testing::AcquireBytes;
using testing::Encode;
using testing::HelloBytes;
using testing::ListBytes;
using testing::OpenBeneathBytes;
using testing::StatusBytes;

// Bytes of all the datagrams waiting in `fd`'s receive queue (unix_inq_len
// sums them for SOCK_SEQPACKET): how much of what the broker sent arrived.
size_t InQueue(int fd);
// Whether the broker has hung up on `fd` (POLLHUP), without reading from it.
bool HungUp(int fd);

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override { StartBroker(testing::BrokerOptions()); }
  // Starts the broker with `options`, connects the good client and takes
  // the baseline: what SetUp does, for a fixture that needs other options.
  void StartBroker(testing::BrokerOptions options);

  // A new raw (blocking) connection to the broker.
  UniqueFd Connect();
  // Sends `bytes` as one datagram with `fds` (borrowed); returns errno or 0.
  static int Send(int fd, absl::Span<const uint8_t> bytes,
                  absl::Span<const int> fds = {}, int flags = 0);
  // Receives one reply; fails the test on a reply that cannot be read
  // (testing::ReceiveRawReply).
  static RawReply Receive(int fd) { return testing::ReceiveRawReply(fd); }
  // Connects, says hello and checks the hello reply.
  UniqueFd ConnectAndHello();

  // Expects an error reply with `id`, `code` and a message holding `why`.
  void ExpectError(int fd, uint64_t id, schema::ErrorCode code,
                   absl::string_view why);
  // Expects that the broker hung up on `fd`.
  void ExpectHangUp(int fd);
  // The good client acquires "motd" and reads it.
  void ExpectGoodClientWorks();
  // That the broker's fd count is back to the baseline
  // (testing::ExpectFdsAtBaseline, on the good client).
  void ExpectFdsAtBaseline() {
    testing::ExpectFdsAtBaseline(*broker_, *client_, baseline_fds_);
  }

  std::unique_ptr<testing::BrokerProcess> broker_;
  std::optional<Client> client_;
  int baseline_fds_ = -1;
};

}  // namespace capbroker::hostile

#endif  // CAPBROKER_TESTS_HOSTILE_HOSTILE_FIXTURE_H_

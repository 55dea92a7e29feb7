// LoopHarness: a ConnectionLoop over a FakeBroker, stepped by the test
// between its own sends and receives, all in one thread (test only).
//
//   LoopHarness harness(handler);
//   ASSERT_OK(harness.Start());
//   ASSERT_OK_AND_ASSIGN(wire::Channel client, harness.Connect());
//   ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness.Call(client, request));
//
// Each step waits for an event (a readable socket), never for time.
#ifndef CAPBROKER_SDK_SERVICE_LOOP_HARNESS_H_
#define CAPBROKER_SDK_SERVICE_LOOP_HARNESS_H_

#include <memory>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "capnp/message.h"
#include "sdk/service/connection_loop.h"
#include "sdk/service/fake_broker.h"
#include "sdk/wire/channel.h"

namespace capbroker::testing {

class LoopHarness {
 public:
  // Borrows `handler`, which must outlive the harness.
  explicit LoopHarness(RequestHandler& handler, ConnectionLoop::Options options = {})
      : handler_(handler), options_(options) {}

  // Makes the fake broker and the loop.
  absl::Status Start();

  // A connection from a client known as `peer`, accepted by the loop.
  absl::StatusOr<wire::Channel> Connect(const Peer& peer = DefaultPeer());

  // Sends `request` with `fds` (borrowed) on `client`, lets the loop serve
  // it, and receives the reply: kUnavailable when the service closed the
  // connection instead. The Incoming is valid until the channel's next
  // Receive.
  absl::StatusOr<wire::Incoming> Call(wire::Channel& client, capnp::MessageBuilder& request,
                                      absl::Span<const int> fds = {});

  // Lets the loop handle what is ready now, without waiting.
  absl::Status TurnNow();

  ConnectionLoop& loop() { return *loop_; }
  FakeBroker& broker() { return *broker_; }

  static Peer DefaultPeer() { return Peer{"tester", 1000, 1000, 4242}; }

 private:
  RequestHandler& handler_;
  ConnectionLoop::Options options_;
  std::optional<FakeBroker> broker_;
  std::unique_ptr<ConnectionLoop> loop_;
};

// A ConnectionLoop running Run() on a thread of its own, for tests of
// blocking clients. Connect makes connections from the test's thread;
// destruction closes the fake broker's end, which ends Run, and joins.
class ServingThread {
 public:
  // Borrows `handler`, which must outlive the thread.
  static absl::StatusOr<std::unique_ptr<ServingThread>> Start(
      RequestHandler& handler, ConnectionLoop::Options options = {});
  ~ServingThread();

  // A connection from a client known as `peer`; the loop accepts it on its
  // thread.
  absl::StatusOr<UniqueFd> Connect(const Peer& peer = LoopHarness::DefaultPeer());

 private:
  ServingThread(FakeBroker broker, RequestHandler& handler, ConnectionLoop::Options options);

  FakeBroker broker_;
  ConnectionLoop loop_;
  std::thread thread_;
};

}  // namespace capbroker::testing

#endif  // CAPBROKER_SDK_SERVICE_LOOP_HARNESS_H_

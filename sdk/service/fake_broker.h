// FakeBroker: the broker's side of a service's broker connection, for
// in-process tests of serving code (test only).
//
//   ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
//   ConnectionLoop loop(broker.client(), handler);
//   ASSERT_OK_AND_ASSIGN(UniqueFd connection, broker.Connect({"alice", 1000}));
//   ... send a request on `connection`, loop.Turn(), receive the reply ...
//   broker.Close();   // the loop's next Turn returns false
//
// Replies to the Client's requests are written before the Client asks, in
// the order it will ask: the hello reply and a first ready reply by Create
// (a Client takes events only once it has said ready), further ready
// replies by AnswerReady. The Client's requests are never read.
#ifndef CAPBROKER_SDK_SERVICE_FAKE_BROKER_H_
#define CAPBROKER_SDK_SERVICE_FAKE_BROKER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "sdk/service/connection_loop.h"

namespace capbroker::testing {

class FakeBroker {
 public:
  // A connected Client whose hello has been answered, and which has said
  // it is ready, as a service does before it takes connections.
  static absl::StatusOr<FakeBroker> Create();

  FakeBroker(FakeBroker&&) = default;
  FakeBroker& operator=(FakeBroker&&) = default;

  // The service's side of the broker connection.
  Client& client() { return *client_; }

  // Makes a connection for a client known as `peer`, as the broker does: a
  // socketpair whose one end goes to the service in an `incoming` event.
  // Returns the client's end.
  absl::StatusOr<UniqueFd> Connect(const Peer& peer);

  // Writes the reply to the Client's next request, a `ready`.
  absl::Status AnswerReady();

  // Makes `count` connections (as Connect, of uids 2000 up; the clients'
  // ends are returned), then has the Client call the broker (a `ready`,
  // standing in for any call a service makes once ready) with room in its
  // fd table for `room` more fds, RLIMIT_NOFILE's soft limit lowered for
  // the call only: the call reads the events ahead of its reply, and those
  // whose fd does not fit are dropped (Client::dropped_incoming). An error
  // when the call failed.
  absl::StatusOr<std::vector<UniqueFd>> ConnectDuringACall(size_t count, size_t room);

  // Closes the broker's end: the service sees end of stream.
  void Close() { end_.reset(); }

 private:
  FakeBroker(UniqueFd end, std::unique_ptr<Client> client)
      : end_(std::move(end)), client_(std::move(client)) {}

  UniqueFd end_;
  std::unique_ptr<Client> client_;
  uint64_t next_id_ = 3;  // hello was 1, the first ready 2
};

}  // namespace capbroker::testing

#endif  // CAPBROKER_SDK_SERVICE_FAKE_BROKER_H_

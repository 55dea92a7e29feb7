#include "sdk/service/loop_harness.h"

#include <cstdio>
#include <utility>

#include "sdk/base/status_macros.h"

namespace capbroker::testing {

absl::Status LoopHarness::Start() {
  CB_ASSIGN_OR_RETURN(FakeBroker broker, FakeBroker::Create());
  broker_.emplace(std::move(broker));
  loop_ = std::make_unique<ConnectionLoop>(broker_->client(), handler_, options_);
  return absl::OkStatus();
}

absl::StatusOr<wire::Channel> LoopHarness::Connect(const Peer& peer) {
  CB_ASSIGN_OR_RETURN(UniqueFd end, broker_->Connect(peer));
  // The event makes the broker fd readable: one turn takes it.
  CB_ASSIGN_OR_RETURN(bool serving, loop_->Turn(-1));
  if (!serving) return absl::UnavailableError("the loop ended");
  return wire::Channel(std::move(end));
}

absl::StatusOr<wire::Incoming> LoopHarness::Call(wire::Channel& client,
                                                 capnp::MessageBuilder& request,
                                                 absl::Span<const int> fds) {
  CB_RETURN_IF_ERROR(client.Send(request, fds));
  // The request makes the connection readable: one turn answers it (or
  // closes the connection).
  CB_ASSIGN_OR_RETURN(bool serving, loop_->Turn(-1));
  if (!serving) return absl::UnavailableError("the loop ended");
  return client.Receive();
}

absl::Status LoopHarness::TurnNow() { return loop_->Turn(0).status(); }

ServingThread::ServingThread(FakeBroker broker, RequestHandler& handler,
                             ConnectionLoop::Options options)
    : broker_(std::move(broker)), loop_(broker_.client(), handler, options) {}

absl::StatusOr<std::unique_ptr<ServingThread>> ServingThread::Start(
    RequestHandler& handler, ConnectionLoop::Options options) {
  CB_ASSIGN_OR_RETURN(FakeBroker broker, FakeBroker::Create());
  std::unique_ptr<ServingThread> serving(new ServingThread(std::move(broker), handler, options));
  ServingThread* s = serving.get();
  s->thread_ = std::thread([s] {
    absl::Status status = s->loop_.Run();
    if (!status.ok()) std::fprintf(stderr, "ServingThread: %s\n", status.ToString().c_str());
  });
  return serving;
}

ServingThread::~ServingThread() {
  broker_.Close();
  thread_.join();
}

absl::StatusOr<UniqueFd> ServingThread::Connect(const Peer& peer) { return broker_.Connect(peer); }

}  // namespace capbroker::testing

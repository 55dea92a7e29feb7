#include "sdk/service/handler_fuzz.h"

#include <poll.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "capnp/serialize.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/limits.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fuzz_datagrams.h"
#include "tests/fixtures/fuzz_file.h"

namespace capbroker::testing {
namespace {

// A request datagram as the loop reads it: word-aligned, framing checked.
class Request {
 public:
  explicit Request(absl::Span<const uint8_t> bytes)
      : copy_(bytes.size() / sizeof(capnp::word)),
        well_framed_(bytes.size() % sizeof(capnp::word) == 0) {
    if (!copy_.empty()) std::memcpy(static_cast<void*>(copy_.data()), bytes.data(), Bytes());
    well_framed_ = well_framed_ && wire::ValidateFraming(words()).ok();
  }

  bool well_framed() const { return well_framed_; }
  // Only for a well-framed request.
  capnp::FlatArrayMessageReader Reader() const {
    return capnp::FlatArrayMessageReader(words(), wire::ReaderLimits());
  }

 private:
  size_t Bytes() const { return copy_.size() * sizeof(capnp::word); }
  kj::ArrayPtr<const capnp::word> words() const { return {copy_.data(), copy_.size()}; }

  std::vector<capnp::word> copy_;
  bool well_framed_;
};

// Runs `read` under CatchKj: what it threw, if anything.
template <typename Read>
absl::Status Reading(const char* what, Read read) {
  return CatchKj(what, [&] {
    read();
    return absl::OkStatus();
  });
}

}  // namespace

HandlerFuzz::HandlerFuzz(RequestHandler& handler, ConnectionLoop::Options options,
                         ProtocolChecks checks)
    : checks_(std::move(checks)), harness_(handler, options) {
  // The first turn opens the loop's epoll fd, which is to stay open.
  FuzzCheck(harness_.Start().ok() && harness_.TurnNow().ok(), "the loop starts");
}

void HandlerFuzz::Run(absl::Span<const uint8_t> input) {
  AttachedFds();  // opened once, before counting
  const int before = CountOpenFds();
  {
    // Made after the count, and closed before the next: the service must
    // close its copies all the same.
    const FuzzFileInput file =
        checks_.takes_file ? SplitFile(input) : FuzzFileInput{.contents = {}, .records = input};
    const FuzzFile attached(file);
    absl::StatusOr<wire::Channel> client = harness_.Connect();
    FuzzCheck(client.ok(), "the loop takes a connection");
    // Answered() must not wait: the loop has answered by then, or never will.
    FuzzCheck(SetNonBlocking(client->fd(), true).ok(), "O_NONBLOCK");
    for (const FuzzDatagram& request : SplitDatagrams(file.records)) {
      // Not sent (too large for the socket): nothing to answer.
      if (SendFuzzDatagram(client->fd(), request, attached.fds()) != 0) continue;
      TurnUntilReadable(client->fd());
      if (!Answered(client->fd(), request.bytes, request.fds)) break;
    }
  }
  // The client has hung up: the loop closes its end on its next turn,
  // unless it has closed it already.
  while (harness_.loop().connection_count() > 0) {
    FuzzCheck(harness_.loop().Turn(-1).ok(), "the loop serves on");
  }
  FuzzCheck(CountOpenFds() == before, "no fd is left open");
}

void HandlerFuzz::TurnUntilReadable(int client) {
  pollfd p{client, POLLIN | POLLRDHUP, 0};
  // A turn can end without serving anything: a signal (libFuzzer's alarm)
  // interrupts epoll_wait.
  while (RetryEintr([&] { return poll(&p, 1, 0); }) == 0) {
    absl::StatusOr<bool> serving = harness_.loop().Turn(-1);
    FuzzCheck(serving.ok() && *serving, "the loop serves on");
  }
}

bool HandlerFuzz::Answered(int client, absl::Span<const uint8_t> bytes, size_t fds) {
  const Request request(bytes);
  request_fds_ = fds;
  absl::StatusOr<std::optional<wire::Datagram>> reply =
      wire::ReceiveDatagram(client, buffer_, wire::FdPolicy::kAccept);
  if (!reply.ok() && reply.status().code() == absl::StatusCode::kUnavailable) {
    // Closed. Fine for a datagram that is no message of the protocol, or
    // whose fds did not all arrive (more than the wire allows).
    FuzzCheck(!request.well_framed() || fds > wire::kMaxFdsPerMessage ||
                  !Reading("reading the request", [&] {
                     capnp::FlatArrayMessageReader reader = request.Reader();
                     checks_.read_request(reader);
                   }).ok(),
              "a request the handler can read is answered");
    return false;
  }
  FuzzCheck(reply.ok(), "a reply fits the wire's limits");
  FuzzCheck(reply->has_value(), "a request is answered, or its connection closed");
  const wire::Datagram& datagram = **reply;
  FuzzCheck(datagram.fds.empty(), "a reply carries no fds");
  FuzzCheck(wire::ValidateFraming(datagram.words).ok(), "a reply is one well-framed message");
  FuzzCheck(request.well_framed(), "only a well-framed request is answered");
  absl::Status read = Reading("reading the reply", [&] {
    capnp::FlatArrayMessageReader request_reader = request.Reader();
    capnp::FlatArrayMessageReader reply_reader(datagram.words, wire::ReaderLimits());
    checks_.check_reply(request_reader, reply_reader);
  });
  if (!read.ok()) std::fprintf(stderr, "%s\n", read.ToString().c_str());
  FuzzCheck(read.ok(), "a reply reads back");
  return true;
}

}  // namespace capbroker::testing

// libFuzzer entry point for the Client's reading of broker messages: what a
// compromised broker, or an impostor at its socket, can send a client.
//
// Input: one byte of how the broker ends (bit 0 set: it closes its end, so
// that a request fails to send and the client looks for the reason the
// broker left; clear: it only stops writing), one byte of the number of
// calls after the hello (at most 8), one byte per call choosing it, then
// the broker's datagrams (tests/fixtures/fuzz_datagrams.h), each carrying
// as many fds as its record says (ends of one socketpair), at most
// kMaxDatagrams of them. All datagrams are queued on the socket before the
// client connects; the client reads them in order and then end of stream,
// so a call never blocks.
//
// Beyond "does not crash", it checks what callers rely on: a capability
// answers its call (the name asked for, an open close-on-exec fd, kind
// connection exactly for ConnectService), an incoming connection has an
// open close-on-exec fd, once the client has closed its connection every
// call fails with kUnavailable, and no fd is left open once the client is
// gone. A broken invariant aborts.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     sdk/client/{client,client_fuzz}.cc sdk/base/{kj_status,syscall,
//     unique_fd}.cc sdk/wire/{channel,datagram,error_code,framing,names,
//     socket_path,unix_socket}.cc tests/fixtures/{fd_count,fuzz_datagrams,
//     raw_send}.cc bazel-bin/schemas/broker.capnp.c++
// and run it with -max_len=70000. In `make test`, client_fuzz_test runs this
// function over broker messages written in it and mutations of them.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "absl/status/statusor.h"
#include "sdk/client/client.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fuzz_check.h"
#include "tests/fixtures/fuzz_datagrams.h"

namespace {

using namespace capbroker;  // NOLINT: a fuzz target's file-local helpers
using capbroker::testing::FuzzCheck;

constexpr size_t kMaxCalls = 8;

// The most datagrams queued for the client. The client sends a request for
// each page of a List or Services it reads, and nobody reads its requests:
// they must all fit in its socket's send buffer, or a call would block. The
// default buffer (212992 bytes, as the kernel counts them) holds about 167
// datagrams of 200 bytes, more than any request takes here: 64 and the
// calls' own requests take less than half of it.
constexpr size_t kMaxDatagrams = 64;

// What a client is handed must be its own to close, and must not reach a
// program it runs.
void CheckFd(const UniqueFd& fd) {
  FuzzCheck(fd.valid() && testing::IsFdOpen(fd.get()), "a returned fd is open");
  FuzzCheck(testing::IsCloseOnExec(fd.get()), "a returned fd is close-on-exec");
}

void CheckCapability(const absl::StatusOr<Capability>& cap, absl::string_view asked,
                     bool connection) {
  if (!cap.ok()) return;
  CheckFd(cap->fd);
  FuzzCheck(cap->name == asked, "a capability has the name asked for");
  FuzzCheck((cap->kind == schema::Kind::CONNECTION) == connection,
        "kind connection answers ConnectService, and only it");
}

// Runs call number `which` (of those below) on `client`.
absl::Status RunCall(Client& client, uint8_t which) {
  switch (which % 9) {
    case 0: {
      absl::StatusOr<Capability> cap = client.Acquire("motd");
      CheckCapability(cap, "motd", false);
      return cap.status();
    }
    case 1: {
      absl::StatusOr<Capability> cap = client.Acquire("motd", schema::Access::READ);
      CheckCapability(cap, "motd", false);
      FuzzCheck(!cap.ok() || cap->access == schema::Access::READ, "access as asked");
      return cap.status();
    }
    case 2: {
      absl::StatusOr<Capability> cap = client.OpenBeneath("spool", "a/b");
      CheckCapability(cap, "spool", false);
      FuzzCheck(!cap.ok() || cap->path == "a/b", "open beneath answers its path");
      return cap.status();
    }
    case 3:
      return client.List().status();
    case 4:
      return client.Status().status();
    case 5: {
      absl::StatusOr<Capability> cap = client.ConnectService("svc");
      CheckCapability(cap, "svc", true);
      return cap.status();
    }
    case 6:
      return client.Services().status();
    case 7:
      return client.Ready();
    default: {
      absl::StatusOr<IncomingConnection> incoming = client.NextIncoming();
      if (incoming.ok()) CheckFd(incoming->fd);
      return incoming.status();
    }
  }
}

void Exchange(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const bool broker_closes = (data[0] & 1) != 0;
  const size_t calls = std::min<size_t>(data[1] % (kMaxCalls + 1), size - 2);
  const uint8_t* call = data + 2;
  absl::Span<const uint8_t> rest(data + 2 + calls, size - 2 - calls);

  int pair[2];
  FuzzCheck(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0, "socketpair");
  UniqueFd client_end(pair[0]);
  UniqueFd broker_end(pair[1]);
  size_t queued = 0;
  for (const testing::FuzzDatagram& d : testing::SplitDatagrams(rest)) {
    // The socket's buffer full: the client reads what fits.
    if (++queued > kMaxDatagrams || testing::SendFuzzDatagram(broker_end.get(), d) != 0) break;
  }
  if (broker_closes) {
    broker_end.reset();
  } else {
    FuzzCheck(shutdown(broker_end.get(), SHUT_WR) == 0, "shutdown");
  }

  absl::StatusOr<Client> client = Client::FromFd(std::move(client_end));
  if (!client.ok()) return;
  for (size_t i = 0; i < calls; ++i) {
    const bool was_closed = client->fd() < 0;
    absl::Status status = RunCall(*client, call[i]);
    if (was_closed) {
      FuzzCheck(status.code() == absl::StatusCode::kUnavailable,
            "every call on a closed connection is kUnavailable");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  testing::AttachedFds();  // opened once, before counting
  const int before = testing::CountOpenFds();
  Exchange(data, size);
  FuzzCheck(testing::CountOpenFds() == before, "no fd is left open");
  return 0;
}

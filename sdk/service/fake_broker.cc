#include "sdk/service/fake_broker.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <cerrno>

#include <utility>

#include "capnp/message.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/channel.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_count.h"

namespace capbroker::testing {
namespace {

// Sends `message` with `fds` on `fd` (borrowed) through a throwaway
// Channel over a duplicate, so that the fixture needs no Channel of its
// own (a Channel cannot give its fd back).
absl::Status SendOn(int fd, capnp::MessageBuilder& message, absl::Span<const int> fds = {}) {
  wire::Channel channel(UniqueFd(fcntl(fd, F_DUPFD_CLOEXEC, 0)));
  return channel.Send(message, fds);
}

}  // namespace

absl::StatusOr<FakeBroker> FakeBroker::Create() {
  CB_ASSIGN_OR_RETURN(auto pair, wire::SeqpacketPair());
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(1);
  auto hello = reply.initHello();
  hello.setUid(0);
  hello.initPrincipals(0);
  CB_RETURN_IF_ERROR(SendOn(pair.first.get(), message));
  capnp::MallocMessageBuilder ready;
  auto ready_reply = ready.initRoot<schema::Reply>();
  ready_reply.setId(2);
  ready_reply.setReady();
  CB_RETURN_IF_ERROR(SendOn(pair.first.get(), ready));
  CB_ASSIGN_OR_RETURN(Client client, Client::FromFd(std::move(pair.second)));
  CB_RETURN_IF_ERROR(client.Ready());
  return FakeBroker(std::move(pair.first), std::make_unique<Client>(std::move(client)));
}

absl::StatusOr<UniqueFd> FakeBroker::Connect(const Peer& peer) {
  CB_ASSIGN_OR_RETURN(auto pair, wire::SeqpacketPair());
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(0);
  auto info = reply.initFds(1)[0];
  info.setName("service");
  info.setKind(schema::Kind::CONNECTION);
  info.setAccess(schema::Access::READ_WRITE);
  auto incoming = reply.initIncoming();
  incoming.setPrincipal(peer.principal);
  incoming.setUid(peer.uid);
  incoming.setGid(peer.gid);
  incoming.setPid(peer.pid);
  const int service_end = pair.second.get();
  CB_RETURN_IF_ERROR(SendOn(end_.get(), message, {&service_end, 1}));
  return std::move(pair.first);  // pair.second closes here: the service has its copy
}

absl::Status FakeBroker::AnswerReady() {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(next_id_++);
  reply.setReady();
  return SendOn(end_.get(), message);
}

absl::StatusOr<std::vector<UniqueFd>> FakeBroker::ConnectDuringACall(size_t count,
                                                                      size_t room) {
  std::vector<UniqueFd> ends;
  for (size_t i = 0; i < count; ++i) {
    CB_ASSIGN_OR_RETURN(UniqueFd end,
                        Connect(Peer{"waiting", static_cast<uint32_t>(2000 + i), 2000, 1}));
    ends.push_back(std::move(end));
  }
  CB_RETURN_IF_ERROR(AnswerReady());
  rlimit saved{};
  if (getrlimit(RLIMIT_NOFILE, &saved) != 0) return ErrnoStatus(errno, "getrlimit");
  rlimit lowered = saved;
  lowered.rlim_cur = SoftLimitLeavingRoomFor(room);
  if (lowered.rlim_cur == 0 || setrlimit(RLIMIT_NOFILE, &lowered) != 0) {
    return ErrnoStatus(errno, "setrlimit(RLIMIT_NOFILE)");
  }
  absl::Status called = client_->Ready();
  if (setrlimit(RLIMIT_NOFILE, &saved) != 0) return ErrnoStatus(errno, "setrlimit(RLIMIT_NOFILE)");
  CB_RETURN_IF_ERROR(called);
  return ends;
}

}  // namespace capbroker::testing

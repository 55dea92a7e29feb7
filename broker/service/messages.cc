#include "broker/service/messages.h"

#include <string>
#include <utility>

#include "broker/server/request_handler.h"
#include "capnp/message.h"
#include "schemas/broker.capnp.h"
#include "sdk/wire/framing.h"

namespace capbroker::service {
namespace {

// Both messages are a few hundred bytes.
constexpr unsigned kMessageWords = 128;

server::Answer Finish(capnp::MallocMessageBuilder& message, UniqueFd fd) {
  server::Answer answer;
  // Far below every limit: names are at most 64 bytes.
  answer.words = std::move(wire::Flatten(message)).value();
  answer.outcome.fds.push_back(std::move(fd));
  return answer;
}

}  // namespace

server::Answer ConnectedAnswer(uint64_t request_id, absl::string_view service,
                               absl::string_view principal, UniqueFd client_end) {
  capnp::MallocMessageBuilder message(kMessageWords);
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(request_id);
  reply.setGranted();
  server::RequestHandler::SetConnection(service, reply);
  server::Answer answer = Finish(message, std::move(client_end));
  answer.outcome.principal = std::string(principal);
  return answer;
}

server::Answer IncomingAnswer(absl::string_view service,
                              const server::ConnectRequest& request, UniqueFd service_end) {
  capnp::MallocMessageBuilder message(kMessageWords);
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(0);
  auto peer = reply.initIncoming();
  peer.setPrincipal(request.principal);
  peer.setUid(request.client.uid);
  peer.setGid(request.client.gid);
  // A service's pid is in the broker's namespace: meaningless to another
  // sandboxed service, so it is left out.
  peer.setPid(request.client.service.empty() ? request.client.pid : 0);
  server::RequestHandler::SetConnection(service, reply);
  return Finish(message, std::move(service_end));
}

}  // namespace capbroker::service

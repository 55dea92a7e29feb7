#include "broker/server/dispatch.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/kj_status.h"
#include "sdk/wire/framing.h"

namespace capbroker::server {
namespace {

// First segment of an error reply: an error message fits easily.
constexpr unsigned kErrorReplyWords = 128;

}  // namespace

Answer ErrorAnswer(uint64_t id, const absl::Status& status, bool close_after) {
  capnp::MallocMessageBuilder message(kErrorReplyWords);
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(id);
  RequestHandler::SetError(reply, status);
  Answer answer;
  // An error reply is a few hundred bytes: far below every limit.
  answer.words = std::move(wire::Flatten(message)).value();
  answer.outcome.close_after_reply = close_after;
  answer.id = id;
  return answer;
}

Answer AnswerRequest(RequestHandler& handler, Session& session,
                     kj::ArrayPtr<const capnp::word> words, bool carried_fds,
                     kj::ArrayPtr<capnp::word> scratch) {
  absl::Status framing = wire::ValidateFraming(words);
  if (!framing.ok()) {
    handler.DenyRequest(session, "invalid", framing);
    return ErrorAnswer(0, framing, false);
  }
  capnp::FlatArrayMessageReader reader(words, wire::ReaderLimits());
  uint64_t id = 0;
  Answer answer;
  {
    // The reply is built on `scratch` and flattened before the builder goes;
    // an error reply never shares `scratch` with a live builder.
    capnp::MallocMessageBuilder message(scratch);
    absl::Status handled = CatchKj("malformed request", [&] {
      auto request = reader.getRoot<schema::Request>();
      id = request.getId();
      auto reply = message.initRoot<schema::Reply>();
      if (carried_fds) {
        reply.setId(id);
        absl::Status status = absl::InvalidArgumentError(
            "requests carry no fds; this one carried some, which were discarded unopened");
        handler.DenyRequest(session, "invalid", status);
        RequestHandler::SetError(reply, status);
        return absl::OkStatus();
      }
      answer.outcome = handler.Handle(session, request, reply);
      return absl::OkStatus();
    });
    answer.id = id;
    if (handled.ok() && answer.outcome.deferred) return answer;  // answered later
    if (!handled.ok()) {
      handler.DenyRequest(session, "invalid", handled);
      return ErrorAnswer(id, handled, false);
    }
    absl::StatusOr<kj::Array<capnp::word>> flat = wire::Flatten(message);
    if (!flat.ok()) {
      // Not expected: the replies that can grow, `list` and `services`,
      // are cut into pages counted to fit (reply_pages.h). Should one not
      // fit, the client learns why.
      return ErrorAnswer(id, flat.status(), answer.outcome.close_after_reply);
    }
    answer.words = std::move(flat).value();
  }
  return answer;
}

}  // namespace capbroker::server

#include "sdk/client/client.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "capnp/message.h"
#include "sdk/base/escape.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/error_code.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/names.h"
#include "sdk/wire/request_text.h"
#include "sdk/wire/socket_path.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker {
namespace {

// First segment of a request builder: room for a hello, an acquire, or an
// open beneath with a path of up to ~300 bytes without a second allocation.
constexpr unsigned kRequestWords = 64;

// Events a service may have waiting while it waits for a reply: beyond
// this, more are dropped (their clients see end of stream), as the fd
// table would drop them.
constexpr size_t kMaxQueuedEvents = 4096;

std::string Str(capnp::Text::Reader text) { return std::string(text.cStr(), text.size()); }

// The context of a kj exception from reading a broker message: Cap'n
// Proto validates a message as it is read, so any accessor may throw.
constexpr absl::string_view kUnreadable = "Cap'n Proto cannot read it";

// A protocol error: what the broker sent, once a request went out, breaks
// the protocol (unreadable, out of step, against the wire's limits). The
// fault is the broker's, never the caller's request, and the connection is
// closed: kInternal, whatever code the layer that found it chose (the
// channel says kInvalidArgument for bad framing, kResourceExhausted for an
// oversized datagram), so that no caller takes it for a request to fix or
// a limit to make room under before asking again.
absl::Status BrokenReply(absl::string_view why) {
  return absl::InternalError(absl::StrCat("broken broker reply: ", why));
}

// The status an error reply carries.
absl::Status ErrorStatus(schema::Error::Reader error) {
  return absl::Status(wire::FromErrorCode(error.getCode()), Str(error.getMessage()));
}

absl::string_view View(capnp::Text::Reader text) {
  return absl::string_view(text.cStr(), text.size());
}

// What a grant must answer: the request as this client sent it.
struct Asked {
  absl::string_view name;  // the capability, directory or service
  absl::string_view path;  // open beneath: the path; empty otherwise
  schema::Access access;   // unspecified: the grant's access, whatever it is
  bool connection;         // ConnectService
};

// Whether `info` describes an answer to `asked`, from the message alone
// (see client.h on why the fd itself is not examined). The texts quoted
// are Shown: a hostile broker's may hold newlines or escape sequences, and
// run to the size of a datagram, and these statuses reach logs and
// terminals as they are.
absl::Status CheckGrant(schema::FdInfo::Reader info, const Asked& asked) {
  const absl::string_view name = View(info.getName());
  if (name != asked.name) {
    return absl::InternalError(absl::StrCat("broker granted '", Shown(name),
                                            "' for a request for '", Shown(asked.name), "'"));
  }
  if ((info.getKind() == schema::Kind::CONNECTION) != asked.connection) {
    return absl::InternalError(absl::StrCat("broker granted a ", KindName(info.getKind()),
                                            " for '", Shown(asked.name), "'"));
  }
  if (View(info.getPath()) != asked.path) {
    return absl::InternalError(absl::StrCat("broker granted path '", Shown(View(info.getPath())),
                                            "' of '", Shown(asked.name),
                                            "' for a request for '", Shown(asked.path), "'"));
  }
  const schema::Access access = info.getAccess();
  if (asked.access == schema::Access::UNSPECIFIED ? !IsConcreteAccess(access)
                                                  : access != asked.access) {
    return absl::InternalError(absl::StrCat("broker granted ", AccessName(access),
                                            " access to '", Shown(asked.name),
                                            "' for a request for ", AccessName(asked.access),
                                            " access"));
  }
  return absl::OkStatus();
}

// Takes the one fd of a grant reply that answers `asked` (Receive checked
// that the datagram carried the fds the message lists). On an error the fd
// stays in `fds`, to be closed with them.
absl::StatusOr<Capability> TakeGrant(schema::Reply::Reader reply,
                                     std::vector<UniqueFd>& fds, const Asked& asked) {
  if (!reply.isGranted() || fds.size() != 1) {
    return absl::InternalError(absl::StrCat(
        "broker reply does not carry one capability (", fds.size(), " fds)"));
  }
  auto info = reply.getFds()[0];
  CB_RETURN_IF_ERROR(CheckGrant(info, asked));
  Capability cap;
  cap.fd = std::move(fds[0]);
  cap.name = Str(info.getName());
  cap.kind = info.getKind();
  cap.access = info.getAccess();
  cap.size = info.getSize();
  cap.path = Str(info.getPath());
  return cap;
}

// Makes `fd` (borrowed), handed to FromFd, fit to be a Client's connection:
// a SOCK_SEQPACKET socket, since the framing relies on one message per
// datagram; close-on-exec, so that an inherited, authenticated connection
// does not leak into a program this process runs later; without credential
// messages, since a socket inherited with SO_PASSPIDFD on (a systemd
// socket's PassPIDFD=) would bring a pidfd, one more open fd, with every
// reply (SO_PASSCRED and SO_PASSSEC only a control message); and blocking,
// since a call waits for its reply. A listening or unconnected socket is
// refused, as a mistake of the caller's, not a broker that hung up.
absl::Status AdoptConnection(int fd) {
  int type = 0;
  socklen_t length = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
    if (errno == ENOTSOCK) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fd ", fd, " is not a socket; a broker connection is a SOCK_SEQPACKET socket"));
    }
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_TYPE)"));
  }
  if (type != SOCK_SEQPACKET) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fd ", fd, " is a socket of type ", type,
        "; a broker connection is a SOCK_SEQPACKET socket"));
  }
  // A listening socket, or one never connected, has no peer: the hello
  // would fail with ENOTCONN, which reads as a broker that hung up.
  int listening = 0;
  length = sizeof(listening);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_ACCEPTCONN)"));
  }
  if (listening != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("fd ", fd, " is a listening socket; pass a connected one"));
  }
  sockaddr_storage peer;
  socklen_t peer_length = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) {
    if (errno == ENOTCONN) {
      return absl::InvalidArgumentError(
          absl::StrCat("fd ", fd, " is not connected; pass a connected socket"));
    }
    return ErrnoStatus(errno, absl::StrCat("getpeername(fd=", fd, ")"));
  }
  const int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_GETFD)"));
  if ((flags & FD_CLOEXEC) == 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_SETFD, FD_CLOEXEC)"));
  }
  CB_RETURN_IF_ERROR(wire::StopCredentialMessages(fd));
  return SetNonBlocking(fd, false);
}

absl::Status CheckOptions(const ClientOptions& options) {
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ClientOptions::timeout is ", absl::FormatDuration(options.timeout),
        "; it must be positive, or absl::InfiniteDuration() for no limit"));
  }
  return absl::OkStatus();
}

// The order and the number of the entries of a reply that comes in pages
// (List, Services), checked page by page. The entries must be strictly
// ascending by Key, the first after the page's startAfter (the last key so
// far; Key{}, before every key a broker may send, for the first page): a
// broker that repeated a page or went back could otherwise keep the client
// asking forever, or hand it an entry twice. A page with more to come must
// hold an entry, and there are at most `max_entries` in all. A broker older
// than pages answers the first request with the whole reply, in its own
// order: that is taken, as the answer to the first request only.
template <typename Key>
class PageChecks {
 public:
  // `what` names the reply in errors: "list", "services report".
  PageChecks(absl::string_view what, size_t max_entries)
      : what_(what), max_entries_(max_entries) {}

  // Whether another page is to be asked for.
  bool more() const { return more_; }
  // The startAfter of the next request.
  const Key& start_after() const { return last_; }

  // Checks a page: `entries` (a Cap'n Proto list), whose keys `key_of`
  // gives, and its `more`.
  template <typename Entries, typename KeyOf>
  absl::Status Page(Entries entries, bool more, KeyOf key_of) {
    CB_RETURN_IF_ERROR(Count(entries.size()));
    for (auto entry : entries) {
      Key key = key_of(entry);
      if (!(last_ < key)) {
        return absl::InternalError(absl::StrCat("the broker answered ", what_,
                                                " entries out of order, repeated or empty: "
                                                "not a ", what_));
      }
      last_ = std::move(key);
    }
    // A page that says "more" must make progress, or this loops.
    if (more && entries.size() == 0) {
      return absl::InternalError("the broker answered an empty page with more to come");
    }
    more_ = more;
    return absl::OkStatus();
  }

  // Checks a whole reply of `entries` entries.
  absl::Status Whole(size_t entries) {
    if (!first_) {
      return absl::InternalError(absl::StrCat(
          "the broker answered a request for a later page with a whole ", what_,
          ": not a page"));
    }
    more_ = false;
    return Count(entries);
  }

 private:
  absl::Status Count(size_t entries) {
    first_ = false;
    seen_ += entries;
    if (seen_ > max_entries_) {
      return absl::InternalError(absl::StrCat("the broker answered more than ", max_entries_,
                                              " entries: not a ", what_));
    }
    return absl::OkStatus();
  }

  const std::string what_;
  const size_t max_entries_;
  Key last_{};
  size_t seen_ = 0;
  bool first_ = true;
  bool more_ = true;
};

// Appends the entries of a list reply to `list`, checking that their names
// and paths are what a policy can hold: within the wire's limits, names not
// empty.
absl::Status AddListEntries(capnp::List<schema::CapabilitySummary>::Reader entries,
                            std::vector<CapabilityInfo>& list) {
  for (auto item : entries) {
    const absl::string_view name = View(item.getName());
    if (name.empty() || name.size() > wire::kMaxNameBytes ||
        item.getPath().size() > wire::kMaxPathBytes) {
      return absl::InternalError(absl::StrCat(
          "the broker answered an empty name, or a name or path longer than a policy's (",
          wire::kMaxNameBytes, " and ", wire::kMaxPathBytes, " bytes): not a list"));
    }
    list.push_back(CapabilityInfo{std::string(name), item.getKind(), item.getAccess(),
                                  Str(item.getPath()), item.getSize()});
  }
  return absl::OkStatus();
}

// Appends the entries of a services reply to `services`, checking that
// each has a policy's name and, on a page (`bounded`), texts no longer than
// the broker sends (it cuts them at wire::kMaxServiceTextBytes). A whole
// reply, from a broker older than pages, did not cut them: one datagram
// bounds it.
absl::Status AddServiceEntries(capnp::List<schema::ServiceInfo>::Reader entries, bool bounded,
                               std::vector<ServiceInfo>& services) {
  for (auto s : entries) {
    const size_t longest = std::max({s.getProtections().size(), s.getMissing().size(),
                                     s.getLastExit().size(), s.getActivation().size()});
    if (s.getName().size() == 0 || s.getName().size() > wire::kMaxNameBytes ||
        (bounded && longest > wire::kMaxServiceTextBytes)) {
      return absl::InternalError(absl::StrCat(
          "the broker answered an empty service name, a name longer than a policy's (",
          wire::kMaxNameBytes, " bytes) or a text longer than the broker sends (",
          wire::kMaxServiceTextBytes, " bytes): not a services report"));
    }
    ServiceInfo info;
    info.name = Str(s.getName());
    info.state = s.getState();
    info.pid = s.getPid();
    info.restarts = s.getRestarts();
    info.uptime_seconds = s.getUptimeSeconds();
    info.protections = Str(s.getProtections());
    info.missing = Str(s.getMissing());
    info.last_exit = Str(s.getLastExit());
    info.activation = Str(s.getActivation());
    info.removed = s.getRemoved();
    services.push_back(std::move(info));
  }
  return absl::OkStatus();
}

// A services report entry's place in the report's order: by name, then
// the policy's instance before one removed from it.
using ServiceKey = std::pair<std::string, bool>;

}  // namespace

absl::StatusOr<Client> Client::Connect(absl::string_view socket_path,
                                       const ClientOptions& options) {
  CB_RETURN_IF_ERROR(CheckOptions(options));
  const absl::Duration deadline = DeadlineAfter(options.timeout);
  std::vector<wire::ClientSocket> paths;
  if (socket_path.empty()) {
    paths = wire::ClientSocketPaths();
  } else {
    paths.push_back(wire::ClientSocket{std::string(socket_path), false});
  }
  // The paths as messages show them: one line, whatever a path holds (the
  // caller's, or $CAPBROKER_SOCKET's).
  std::vector<std::string> shown;
  for (const wire::ClientSocket& path : paths) shown.push_back(Escaped(path.path));
  for (size_t i = 0; i < paths.size(); ++i) {
    absl::StatusOr<UniqueFd> fd = wire::ConnectSeqpacket(paths[i].path, options.timeout);
    if (fd.ok()) {
      // Checked on the connection itself, which no later rename or
      // symlink can redirect: see wire::ClientSocket.
      if (paths[i].from_runtime_dir) {
        CB_RETURN_IF_ERROR(wire::CheckRuntimeDirBroker(fd->get(), geteuid(), paths[i].path));
      }
      return Adopt(std::move(fd).value(), options.timeout, deadline);
    }
    if (fd.status().code() == absl::StatusCode::kPermissionDenied) {
      // connect(2) says EACCES when the socket file is not writable by us
      // or a directory on its path not searchable: the file system keeps
      // us from the broker, which has decided nothing. kPermissionDenied
      // would read as the policy's denial.
      return absl::UnavailableError(absl::StrCat(
          "cannot reach the broker at ", shown[i], ": ", fd.status().message(),
          "; the socket's permissions or those of a directory on its path keep this user "
          "out (not the broker's policy, which was not asked)"));
    }
    if (wire::IsOtherSocketType(fd.status())) {
      // Another program's socket (EPROTOTYPE): no broker can be reached
      // there. kUnavailable, as for any other path without a broker.
      return absl::UnavailableError(absl::StrCat(
          "the socket at ", shown[i],
          " is not a broker's: it is a stream or datagram socket, and a broker's is "
          "SOCK_SEQPACKET (another program's socket, or the wrong path)"));
    }
    // Only a path where nothing exists sends us on to the next: a socket
    // that refuses is a broker that is down, and one we may not reach is
    // not replaced by another broker behind the caller's back.
    if (fd.status().code() != absl::StatusCode::kNotFound) return fd.status();
  }
  std::string passed_over;
  const char* named = secure_getenv("CAPBROKER_SOCKET");
  if (socket_path.empty() && (named == nullptr || named[0] == '\0')) {
    // Root, after `su` or `sudo -E`, with a user's XDG_RUNTIME_DIR: say
    // why the broker that may run there was not asked.
    if (std::optional<std::string> foreign = wire::ForeignRuntimeDir()) {
      passed_over = absl::StrCat("; ", Escaped(*foreign),
                                 ", so root does not look there: name a socket in it "
                                 "(capctl --socket, or CAPBROKER_SOCKET) to trust that broker");
    }
  }
  return absl::UnavailableError(absl::StrCat("no broker socket at ", absl::StrJoin(shown, " or "),
                                             " (is capbrokerd running?)", passed_over));
}

Client::Client(Client&& other) noexcept
    : channel_(std::move(other.channel_)),
      timeout_(other.timeout_),
      events_(std::move(other.events_)),
      dropped_incoming_(other.dropped_incoming_),
      next_id_(other.next_id_),
      said_ready_(other.said_ready_),
      closed_(other.closed_),
      peer_(std::move(other.peer_)) {
  other.LeaveMovedFrom();
}

Client& Client::operator=(Client&& other) noexcept {
  if (this == &other) return *this;
  channel_ = std::move(other.channel_);  // closes the connection this held
  timeout_ = other.timeout_;
  events_ = std::move(other.events_);
  dropped_incoming_ = other.dropped_incoming_;
  next_id_ = other.next_id_;
  said_ready_ = other.said_ready_;
  closed_ = other.closed_;
  peer_ = std::move(other.peer_);
  other.LeaveMovedFrom();
  return *this;
}

void Client::LeaveMovedFrom() {
  // Defaulted moves left an OK status behind (or one absl reports as
  // "accessed after move"), so that calls went on to a channel without a
  // socket or a receive buffer: the moved-from object must say what it is.
  closed_ = absl::UnavailableError("this Client was moved from");
  channel_.Close();
  timeout_ = absl::InfiniteDuration();
  events_.clear();
  dropped_incoming_ = 0;
  next_id_ = 1;
  said_ready_ = false;
  peer_ = PeerInfo();
}

absl::StatusOr<Client> Client::FromFd(UniqueFd fd, const ClientOptions& options) {
  CB_RETURN_IF_ERROR(CheckOptions(options));
  return Adopt(std::move(fd), options.timeout, DeadlineAfter(options.timeout));
}

absl::StatusOr<Client> Client::Adopt(UniqueFd fd, absl::Duration timeout,
                                     absl::Duration deadline) {
  CB_RETURN_IF_ERROR(AdoptConnection(fd.get()));
  Client client(std::move(fd), timeout);
  CB_RETURN_IF_ERROR(client.Hello(deadline));
  return client;
}

template <typename Fill, typename Read>
absl::Status Client::Call(ReplyFds fds, Fill fill, Read read) {
  return CallUntil(DeadlineAfter(timeout_), fds, fill, read);
}

template <typename Fill, typename Read>
absl::Status Client::CallUntil(absl::Duration deadline, ReplyFds fds, Fill fill,
                                Read read) {
  CB_RETURN_IF_ERROR(CheckOpen());
  const uint64_t id = next_id_;
  // Requests are a few dozen words: they are built on the stack (the
  // builder wants its first segment zeroed). A longer one (a long path)
  // spills into segments the builder allocates.
  capnp::word first_segment[kRequestWords] = {};
  capnp::MallocMessageBuilder message(kj::arrayPtr(first_segment, kRequestWords));
  auto request = message.initRoot<schema::Request>();
  request.setId(id);
  fill(request);
  // A request refused here (too large, say, or with no room for it in
  // time) never reached the broker: the connection is still in step, and
  // the id is still unused. The socket reports room (POLLOUT) while its
  // unread datagrams take at most a quarter of its send buffer: a send
  // then never waits. Only a peer that answers without reading fills it.
  CB_ASSIGN_OR_RETURN(bool room, PollUntil(channel_.fd(), POLLOUT, deadline));
  if (!room) {
    return absl::DeadlineExceededError(absl::StrCat("the broker did not take the request within ",
                                                    absl::FormatDuration(timeout_),
                                                    " (it is not reading)"));
  }
  absl::Status sent = channel_.Send(message);
  if (sent.code() == absl::StatusCode::kUnavailable) return Break(WhyHungUp(std::move(sent)));
  CB_RETURN_IF_ERROR(sent);
  ++next_id_;
  // From here the broker owes this request the next reply. Anything but
  // that reply (or an event) leaves the two sides out of step, and a reply
  // read as another request's would hand the caller the wrong answer, or
  // the wrong fd: the connection is closed instead.
  // Past the deadline PollUntil still looks once, so that a reply already
  // queued is taken; but a peer that keeps unasked messages coming would
  // keep it answering "ready" for ever. So once a message that does not
  // answer the call is read past the deadline, the bytes queued behind it
  // are counted, and the call reads no more than those.
  std::optional<size_t> queued_at_deadline;
  for (;;) {
    absl::StatusOr<bool> ready = PollUntil(channel_.fd(), POLLIN, deadline);
    if (!ready.ok()) return Break(ready.status());
    if (!*ready) return Break(NoAnswer());
    absl::StatusOr<wire::Incoming> incoming = Receive();
    if (!incoming.ok()) {
      if (absl::IsDeadlineExceeded(incoming.status())) {  // SO_RCVTIMEO
        return Break(absl::DeadlineExceededError(
            absl::StrCat("the broker did not answer: ", incoming.status().message())));
      }
      return Break(incoming.status());
    }
    std::optional<absl::Status> answer;
    absl::Status in_step = CatchKj(kUnreadable, [&]() -> absl::Status {
      auto reply = incoming->reader->getRoot<schema::Reply>();
      const uint64_t reply_id = reply.getId();
      const size_t listed = reply.getFds().size();
      // The broker answers a request it could not read with id 0, since it
      // cannot trust the id it would echo. With one request outstanding,
      // that request is this one.
      if (reply.isError() && (reply_id == id || reply_id == 0)) {
        // The broker never sends fds with an error: fds there would be
        // installed here for nothing.
        if (listed != 0) {
          return absl::InternalError(absl::StrCat("the broker sent an error with ", listed,
                                                  " fds; an error carries none"));
        }
        answer = ErrorStatus(reply.getError());
        return absl::OkStatus();
      }
      if (reply_id == 0) return QueueEvent(reply, *incoming);  // not ours
      if (reply_id != id) {
        return absl::InternalError(absl::StrCat(
            "broker replied to request ", reply_id, ", expected ", id));
      }
      if (fds == ReplyFds::kNone && listed != 0) {
        return absl::InternalError(absl::StrCat("the broker's reply to request ", id, " lists ",
                                                listed, " fds; its answer carries none"));
      }
      if (incoming->fds_cut) {
        // The reply was read whole, so the connection is in step; what it
        // carried is lost (the fds that came close with `incoming`).
        answer = absl::ResourceExhaustedError(absl::StrCat(
            "the fds of the broker's reply did not fit (", incoming->fds.size(), " of ",
            reply.getFds().size(),
            " arrived, and were closed): this process is at its open-file limit "
            "(RLIMIT_NOFILE; a hosted service: its policy's limits.openFiles), or a security "
            "module refused one; close fds or raise the limit, then ask again"));
        return absl::OkStatus();
      }
      answer = absl::OkStatus();
      return read(reply, incoming->fds);
    });
    if (!in_step.ok()) return Break(BrokenReply(in_step.message()));
    if (answer.has_value()) return *answer;
    if (queued_at_deadline.has_value()) {
      *queued_at_deadline -= std::min(*queued_at_deadline, incoming->bytes);
    } else if (MonotonicNow() >= deadline) {
      int queued = 0;  // SIOCINQ: every datagram's bytes on a SEQPACKET socket
      if (ioctl(channel_.fd(), FIONREAD, &queued) != 0) {
        return Break(ErrnoStatus(errno, "ioctl(FIONREAD) on the broker connection"));
      }
      queued_at_deadline = static_cast<size_t>(std::max(queued, 0));
    }
    if (queued_at_deadline == size_t{0}) return Break(NoAnswer());
  }
}

absl::Status Client::NoAnswer() const {
  return absl::DeadlineExceededError(
      absl::StrCat("the broker did not answer within ", absl::FormatDuration(timeout_)));
}

absl::Status Client::Break(absl::Status why) {
  closed_ = absl::UnavailableError(absl::StrCat(
      "the connection to the broker was closed after an earlier error: ", why.ToString()));
  channel_.Close();
  // Connections queued for a service go too: their clients see end of
  // stream rather than wait on a service that can no longer hear the broker.
  events_.clear();
  return why;
}

absl::StatusOr<wire::Incoming> Client::Receive() {
  absl::StatusOr<wire::Incoming> incoming = channel_.Receive();
  if (!incoming.ok()) {
    // What the datagram held (wire::Channel::Receive): too large, not
    // whole words, empty, a bad segment table, fds cut short.
    if (wire::IsMalformedDatagram(incoming.status())) {
      return BrokenReply(incoming.status().message());
    }
    if (absl::IsUnavailable(incoming.status())) {
      return absl::UnavailableError(
          absl::StrCat("the broker closed the connection: ", incoming.status().message()));
    }
    // recvmsg failing (ENOMEM, say: this process's, not the broker's),
    // a receive timeout (SO_RCVTIMEO).
    return incoming;
  }
  // Every message lists the fds its datagram carries: a list that
  // disagrees means the message and the fds cannot be matched. When the
  // fds did not all fit (the channel takes what fits), those that came are
  // the first ones sent, fewer than listed; the kernel does not say how
  // many there were, so a list past what one datagram may carry is as
  // wrong as a list shorter than what came.
  size_t listed = 0;
  absl::Status readable = CatchKj(kUnreadable, [&] {
    listed = incoming->reader->getRoot<schema::Reply>().getFds().size();
    return absl::OkStatus();
  });
  if (!readable.ok()) return BrokenReply(readable.message());
  const size_t carried = incoming->fds.size();
  if (incoming->fds_cut ? carried >= listed || listed > wire::kMaxFdsPerMessage
                        : carried != listed) {
    return BrokenReply(absl::StrCat(
        "broker message lists ", listed, " fds but its datagram carried ", carried,
        incoming->fds_cut ? absl::StrCat(" and more that did not fit (at most ",
                                         wire::kMaxFdsPerMessage, " may come)")
                          : ""));
  }
  return incoming;
}

absl::Status Client::WhyHungUp(absl::Status send_error) {
  // After a hang-up nothing more can arrive: what waits is all there is,
  // and a receive does not block.
  pollfd p{channel_.fd(), POLLIN, 0};
  if (RetryEintr([&] { return poll(&p, 1, 0); }) <= 0 || !(p.revents & POLLIN)) {
    return send_error;
  }
  absl::StatusOr<wire::Incoming> incoming = Receive();
  if (!incoming.ok()) return send_error;
  std::optional<absl::Status> reason;
  (void)CatchKj(kUnreadable, [&] {
    auto reply = incoming->reader->getRoot<schema::Reply>();
    if (reply.isError() && reply.getId() == 0) reason = ErrorStatus(reply.getError());
    return absl::OkStatus();
  });
  return reason.has_value() ? *reason : send_error;
}

absl::Status Client::QueueEvent(schema::Reply::Reader reply, wire::Incoming& incoming) {
  // Kinds this client does not know (the schema grows) are skipped; their
  // fds close with `incoming`.
  if (!reply.isIncoming()) return absl::OkStatus();
  // The broker makes connections for a hosted service only, once it has
  // said Ready(): any other client (capctl, say) never takes them, and
  // would hold their fds until it closes.
  if (!said_ready_) {
    return absl::InternalError(
        "the broker sent an incoming connection to a client that is no service (it has not "
        "said ready)");
  }
  if (reply.getFds().size() != 1) {
    return absl::InternalError(absl::StrCat("the broker sent an incoming connection with ",
                                            reply.getFds().size(), " fds, not 1"));
  }
  auto peer = reply.getIncoming();
  // A principal is a policy's name. Anything else was no policy's: longer,
  // it would be copied into the queue as it is; with other bytes (a
  // newline, an escape sequence), it would go raw into the service's log
  // lines, which name the peer (connection_loop.h: Describe).
  const absl::string_view principal = View(peer.getPrincipal());
  if (!wire::IsPolicyName(principal)) {
    return absl::InternalError(absl::StrCat(
        "the broker sent an incoming connection whose principal '", Shown(principal), "' (",
        principal.size(), " bytes) is no policy's name (1 to ", wire::kMaxNameBytes,
        " of A-Z a-z 0-9 _ . -, the first a letter or digit)"));
  }
  // An event whose fd did not fit lost it: the kernel closed the service's
  // end, and its client sees end of stream. Past the queue's limit, one is
  // dropped the same way, its fd closed with `incoming`. Either way the
  // message was read whole: the connection is in step.
  if (incoming.fds_cut || events_.size() >= kMaxQueuedEvents) {
    ++dropped_incoming_;
    return absl::OkStatus();
  }
  IncomingConnection event;
  event.fd = std::move(incoming.fds[0]);
  event.principal = std::string(principal);
  event.uid = peer.getUid();
  event.gid = peer.getGid();
  event.pid = peer.getPid();
  events_.push_back(std::move(event));
  return absl::OkStatus();
}

absl::StatusOr<IncomingConnection> Client::NextIncoming() {
  CB_RETURN_IF_ERROR(CheckOpen());
  while (events_.empty()) {
    absl::StatusOr<wire::Incoming> incoming = Receive();
    if (!incoming.ok()) {
      // A hang-up, or, on a socket TryAccept made non-blocking, nothing to
      // read yet, or a receive timeout (SO_RCVTIMEO) that passed: none
      // leaves a message half-read.
      if (absl::IsUnavailable(incoming.status()) ||
          absl::IsDeadlineExceeded(incoming.status())) {
        return incoming.status();
      }
      return Break(incoming.status());
    }
    absl::Status in_step = CatchKj(kUnreadable, [&]() -> absl::Status {
      auto reply = incoming->reader->getRoot<schema::Reply>();
      if (reply.getId() != 0) {
        return absl::InternalError(absl::StrCat("unexpected reply to request ",
                                                reply.getId(), " while waiting for a connection"));
      }
      if (reply.isError()) {
        return absl::InternalError(
            absl::StrCat("the broker sent an error for no request: ",
                         Shown(ErrorStatus(reply.getError()).ToString(), kMaxShownReasonBytes)));
      }
      return QueueEvent(reply, *incoming);
    });
    if (!in_step.ok()) return Break(BrokenReply(in_step.message()));
  }
  IncomingConnection event = std::move(events_.front());
  events_.pop_front();
  return event;
}

absl::StatusOr<Capability> Client::ConnectService(absl::string_view service) {
  CB_RETURN_IF_ERROR(wire::CheckServiceName(service));
  absl::StatusOr<Capability> result = absl::InternalError("no reply");
  CB_RETURN_IF_ERROR(Call(
      ReplyFds::kGrant,
      [&](schema::Request::Builder r) {
        r.initConnect().setService(capnp::Text::Reader(service.data(), service.size()));
      },
      [&](schema::Reply::Reader reply, std::vector<UniqueFd>& fds) {
        result = TakeGrant(reply, fds, Asked{service, "", schema::Access::UNSPECIFIED, true});
        return result.status();
      }));
  return result;
}

absl::Status Client::Ready() {
  // From here `incoming` events are this client's to queue: the broker
  // sends them once it has this, and may before its reply arrives.
  said_ready_ = true;
  absl::Status said =
      Call(ReplyFds::kNone, [](schema::Request::Builder r) { r.setReady(); },
           [](schema::Reply::Reader reply, std::vector<UniqueFd>&) -> absl::Status {
             if (!reply.isReady()) return absl::InternalError("broker did not answer ready");
             return absl::OkStatus();
           });
  // Refused (this client is no hosted service) or failed: it is not ready,
  // and a later event is a protocol error, as before Ready() (client.h).
  // Those that came while the call was outstanding stay queued.
  if (!said.ok()) said_ready_ = false;
  return said;
}

absl::StatusOr<std::vector<ServiceInfo>> Client::Services() {
  std::vector<ServiceInfo> services;
  PageChecks<ServiceKey> pages("services report", wire::kMaxServiceEntries);
  while (pages.more()) {
    CB_RETURN_IF_ERROR(Call(
        ReplyFds::kNone,
        [&](schema::Request::Builder r) {
          r.setServices();
          auto page = r.initServicesPage();
          const ServiceKey& after = pages.start_after();
          page.setStartAfter(capnp::Text::Reader(after.first.data(), after.first.size()));
          page.setStartAfterRemoved(after.second);
        },
        [&](schema::Reply::Reader reply, std::vector<UniqueFd>&) -> absl::Status {
          if (reply.isServices()) {  // a broker older than pages
            CB_RETURN_IF_ERROR(pages.Whole(reply.getServices().size()));
            return AddServiceEntries(reply.getServices(), /*bounded=*/false, services);
          }
          if (!reply.isServicePage()) return absl::InternalError("broker did not answer services");
          auto page = reply.getServicePage();
          CB_RETURN_IF_ERROR(pages.Page(page.getEntries(), page.getMore(), [](auto s) {
            return ServiceKey(Str(s.getName()), s.getRemoved());
          }));
          return AddServiceEntries(page.getEntries(), /*bounded=*/true, services);
        }));
  }
  return services;
}

absl::Status Client::Hello(absl::Duration deadline) {
  return CallUntil(
      deadline, ReplyFds::kNone,
      [](schema::Request::Builder r) {
        r.initHello().setVersion(schema::PROTOCOL_VERSION);
      },
      [this](schema::Reply::Reader reply, std::vector<UniqueFd>&) -> absl::Status {
        if (!reply.isHello()) return absl::InternalError("broker did not answer hello");
        auto hello = reply.getHello();
        peer_.uid = hello.getUid();
        peer_.gid = hello.getGid();
        peer_.pid = hello.getPid();
        peer_.exe = Str(hello.getExe());
        for (auto name : hello.getPrincipals()) peer_.principals.push_back(Str(name));
        peer_.more_principals = hello.getMorePrincipals();
        return absl::OkStatus();
      });
}

absl::StatusOr<Capability> Client::Acquire(absl::string_view name,
                                           schema::Access access) {
  CB_RETURN_IF_ERROR(wire::CheckCapabilityName(name));
  absl::StatusOr<Capability> result = absl::InternalError("no reply");
  CB_RETURN_IF_ERROR(Call(
      ReplyFds::kGrant,
      [&](schema::Request::Builder r) {
        auto acquire = r.initAcquire();
        acquire.setName(capnp::Text::Reader(name.data(), name.size()));
        acquire.setAccess(access);
      },
      [&](schema::Reply::Reader reply, std::vector<UniqueFd>& fds) {
        result = TakeGrant(reply, fds, Asked{name, "", access, false});
        return result.status();
      }));
  return result;
}

absl::StatusOr<Capability> Client::OpenBeneath(absl::string_view directory,
                                               absl::string_view path,
                                               const BeneathOptions& options) {
  CB_RETURN_IF_ERROR(wire::CheckDirectoryName(directory));
  CB_RETURN_IF_ERROR(wire::CheckBeneathPath(path));
  absl::StatusOr<Capability> result = absl::InternalError("no reply");
  CB_RETURN_IF_ERROR(Call(
      ReplyFds::kGrant,
      [&](schema::Request::Builder r) {
        auto open = r.initOpenBeneath();
        open.setDirectory(capnp::Text::Reader(directory.data(), directory.size()));
        open.setPath(capnp::Text::Reader(path.data(), path.size()));
        open.setAccess(options.access);
        open.setCreate(options.create);
        open.setTruncate(options.truncate);
        open.setMode(options.mode);
      },
      [&](schema::Reply::Reader reply, std::vector<UniqueFd>& fds) {
        result = TakeGrant(reply, fds, Asked{directory, path, options.access, false});
        return result.status();
      }));
  return result;
}

absl::StatusOr<std::vector<CapabilityInfo>> Client::List() {
  std::vector<CapabilityInfo> list;
  PageChecks<std::string> pages("list", wire::kMaxListEntries);
  while (pages.more()) {
    CB_RETURN_IF_ERROR(Call(
        ReplyFds::kNone,
        [&](schema::Request::Builder r) {
          r.setList();
          const std::string& after = pages.start_after();
          r.initListPage().setStartAfter(capnp::Text::Reader(after.data(), after.size()));
        },
        [&](schema::Reply::Reader reply, std::vector<UniqueFd>&) -> absl::Status {
          if (reply.isList()) {  // a broker older than pages
            CB_RETURN_IF_ERROR(pages.Whole(reply.getList().size()));
            return AddListEntries(reply.getList(), list);
          }
          if (!reply.isCapabilities()) return absl::InternalError("broker did not answer list");
          auto page = reply.getCapabilities();
          CB_RETURN_IF_ERROR(pages.Page(page.getEntries(), page.getMore(),
                                        [](auto c) { return Str(c.getName()); }));
          return AddListEntries(page.getEntries(), list);
        }));
  }
  return list;
}

absl::StatusOr<BrokerStatus> Client::Status() {
  BrokerStatus status;
  CB_RETURN_IF_ERROR(Call(
      ReplyFds::kNone, [](schema::Request::Builder r) { r.setStatus(); },
      [&](schema::Reply::Reader reply, std::vector<UniqueFd>&) -> absl::Status {
        if (!reply.isStatus()) return absl::InternalError("broker did not answer status");
        auto s = reply.getStatus();
        status.version = s.getVersion();
        status.uptime_seconds = s.getUptimeSeconds();
        status.connections = s.getConnections();
        status.grants = s.getGrants();
        status.denials = s.getDenials();
        for (auto r : s.getDenialsByReason()) {
          status.denials_by_reason.emplace_back(Str(r.getReason()), r.getCount());
        }
        status.policy_path = Str(s.getPolicyPath());
        status.capabilities = s.getCapabilities();
        status.principals = s.getPrincipals();
        status.policy_generation = s.getPolicyGeneration();
        status.policy_reload_failures = s.getPolicyReloadFailures();
        status.last_reload_error = Str(s.getLastReloadError());
        status.last_reload_seconds_ago = s.getLastReloadSecondsAgo();
        status.last_reload_refused = s.getLastReloadRefused();
        status.audit_lines_lost = s.getAuditLinesLost();
        status.audit_log_error = Str(s.getAuditLogError());
        status.audit_lines_to_deleted_files = s.getAuditLinesToDeletedFiles();
        return absl::OkStatus();
      }));
  return status;
}

}  // namespace capbroker

// Client against a fake broker in this process: finding the socket, and
// what the client does with each kind of broker message, well-formed or not.
#include "sdk/client/client.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "capnp/any.h"
#include "capnp/message.h"
#include "capnp/schema.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/channel.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/socket_path.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/syscall_filter.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/in_child.h"

namespace capbroker {
namespace {

using ::capbroker::testing::CountOpenFds;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::Values;

using Fill = std::function<void(schema::Reply::Builder)>;

// The answer to the hello that opens every connection.
void HelloReply(schema::Reply::Builder reply) {
  reply.setId(1);
  reply.initHello().setVersion(schema::PROTOCOL_VERSION);
}

// Receives the hello on `broker` and answers it, as the broker does.
void AnswerHello(wire::Channel& broker) {
  ASSERT_OK_AND_ASSIGN(wire::Incoming hello, broker.Receive());
  capnp::MallocMessageBuilder message;
  HelloReply(message.initRoot<schema::Reply>());
  ASSERT_OK(broker.Send(message));
}

// Connect() with the environment of a user whose runtime dir is a fresh
// directory; the variables it reads are restored afterwards.
class ClientConnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* value = getenv(name);
      saved_.emplace_back(name, value == nullptr ? std::nullopt
                                                 : std::optional<std::string>(value));
      ASSERT_EQ(unsetenv(name), 0);
    }
    ASSERT_EQ(setenv("XDG_RUNTIME_DIR", runtime_.path().c_str(), 1), 0);
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        EXPECT_EQ(setenv(name, value->c_str(), 1), 0);
      } else {
        EXPECT_EQ(unsetenv(name), 0);
      }
    }
  }
  static constexpr const char* kVariables[] = {"CAPBROKER_SOCKET", "XDG_RUNTIME_DIR"};

  testing::TempDir runtime_;
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST_F(ClientConnectTest, FindsThePerUserBroker) {
  ASSERT_EQ(mkdir(runtime_.Join("capbroker").c_str(), 0700), 0);
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address,
                       wire::MakeUnixAddress(runtime_.Join("capbroker/broker.sock")));
  ASSERT_OK_AND_ASSIGN(UniqueFd listener,
                       TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "socket"));
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                 address.length),
            0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  // The hello is answered once it arrives: Connect blocks until then.
  std::thread broker([&] {
    absl::StatusOr<UniqueFd> accepted =
        TakeFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept4");
    ASSERT_OK(accepted);
    wire::Channel channel(std::move(accepted).value());
    AnswerHello(channel);
  });
  EXPECT_OK(Client::Connect());
  broker.join();
}

// Without a per-user broker, a client goes on to the system broker's socket,
// which serves every user; when that is missing too, the error names both.
TEST_F(ClientConnectTest, NoBrokerAnywhereIsUnavailableNamingEachPath) {
  if (access(wire::kSystemSocketPath, F_OK) == 0) {
    GTEST_SKIP() << "a system broker listens at " << wire::kSystemSocketPath;
  }
  EXPECT_THAT(Client::Connect(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(runtime_.Join("capbroker/broker.sock")),
                             HasSubstr(wire::kSystemSocketPath))));
  // Nothing configured at all: still the system broker, and kUnavailable
  // (capctl's "broker unavailable"), not kNotFound ("no such capability").
  ASSERT_EQ(unsetenv("XDG_RUNTIME_DIR"), 0);
  EXPECT_THAT(Client::Connect(), StatusIs(absl::StatusCode::kUnavailable,
                                          HasSubstr(wire::kSystemSocketPath)));
}

// Root passes over a runtime directory that is not root's alone (a user's,
// after `su`; or one others may write): the error says so, and how to use
// a broker there all the same.
TEST_F(ClientConnectTest, RootSaysWhyItPassedOverTheRuntimeDir) {
  if (geteuid() != 0) GTEST_SKIP() << "root's rule";
  if (access(wire::kSystemSocketPath, F_OK) == 0) {
    GTEST_SKIP() << "a system broker listens at " << wire::kSystemSocketPath;
  }
  ASSERT_EQ(chmod(runtime_.path().c_str(), 01777), 0);
  EXPECT_THAT(Client::Connect(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(wire::kSystemSocketPath),
                             Not(HasSubstr(runtime_.Join("capbroker/broker.sock"))),
                             HasSubstr("writable by others, so root does not look there"),
                             HasSubstr("CAPBROKER_SOCKET"))));
  // A socket named explicitly was looked for there alone: nothing passed over.
  EXPECT_THAT(Client::Connect(wire::kSystemSocketPath),
              StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr("does not look there"))));
  ASSERT_EQ(setenv("CAPBROKER_SOCKET", wire::kSystemSocketPath, 1), 0);
  EXPECT_THAT(Client::Connect(),
              StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr("does not look there"))));
}

// A stream socket where the broker's should be (another program's) is
// `unavailable`, saying so, not "Protocol wrong type for socket"; and the
// client does not go on to the system broker behind the caller's back.
TEST_F(ClientConnectTest, AStreamSocketAtThePathIsNotABroker) {
  ASSERT_EQ(mkdir(runtime_.Join("capbroker").c_str(), 0700), 0);
  const std::string path = runtime_.Join("capbroker/broker.sock");
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(path));
  ASSERT_OK_AND_ASSIGN(UniqueFd listener,
                       TakeFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                 address.length),
            0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  absl::StatusOr<Client> client = Client::Connect();
  EXPECT_THAT(client, StatusIs(absl::StatusCode::kUnavailable,
                               AllOf(HasSubstr(absl::StrCat("the socket at ", path,
                                                            " is not a broker's")),
                                     HasSubstr("stream"), HasSubstr("SOCK_SEQPACKET"))));
  EXPECT_THAT(client.status().message(), Not(HasSubstr(wire::kSystemSocketPath)));
}

// A SOCK_SEQPACKET socket bound at `path` whose listen(2) a child ran as
// `uid`: SO_PEERCRED gives a connecting client the credentials of whoever
// called listen(2), so this is a listener of that user's, though this
// process holds it. Connections wait in its queue unanswered.
absl::StatusOr<UniqueFd> ListenAs(const std::string& path, uid_t uid) {
  CB_ASSIGN_OR_RETURN(wire::UnixAddress address, wire::MakeUnixAddress(path));
  CB_ASSIGN_OR_RETURN(UniqueFd listener,
                      TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "socket"));
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.addr), address.length) !=
          0 ||
      chmod(path.c_str(), 0666) != 0) {
    return ErrnoStatus(errno, absl::StrCat("bind or chmod ", path));
  }
  testing::ChildResult child = testing::RunInChild([&]() -> std::string {
    if (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
      return absl::StrCat("setresuid(", uid, "): ", strerror(errno));
    }
    return listen(listener.get(), 8) == 0 ? "" : absl::StrCat("listen: ", strerror(errno));
  });
  if (!WIFEXITED(child.wait_status) || WEXITSTATUS(child.wait_status) != 0 ||
      !child.output.empty()) {
    return absl::InternalError(absl::StrCat("listening as uid ", uid, ": ", child.output));
  }
  return listener;
}

// Root's runtime directory passed ForeignRuntimeDir's look, but what
// connect(2) reached is another user's listener: a symlink on the way
// swapped after the look, say. Root refuses it, naming who listens, and
// does not go on to the system socket; the connection closes.
TEST_F(ClientConnectTest, RootRefusesAnotherUsersListenerInItsRuntimeDir) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to listen as another user";
  ASSERT_EQ(mkdir(runtime_.Join("capbroker").c_str(), 0755), 0);
  const std::string path = runtime_.Join("capbroker/broker.sock");
  ASSERT_OK_AND_ASSIGN(UniqueFd impostor, ListenAs(path, 65534));
  const int fds_before = testing::CountOpenFds();
  // The old client connected and waited for a hello it never got.
  EXPECT_THAT(Client::Connect("", ClientOptions{absl::Seconds(5)}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("refusing the broker at ", path,
                                                    ": it is run by uid 65534")),
                             HasSubstr("through XDG_RUNTIME_DIR must run as root"),
                             HasSubstr("--socket"), Not(HasSubstr(wire::kSystemSocketPath)))));
  EXPECT_EQ(testing::CountOpenFds(), fds_before);
  // Named by the caller, the same socket is the caller's choice: no check,
  // and the hello goes unanswered.
  EXPECT_THAT(Client::Connect(path, ClientOptions{absl::Milliseconds(50)}),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  ASSERT_EQ(setenv("CAPBROKER_SOCKET", path.c_str(), 1), 0);
  EXPECT_THAT(Client::Connect("", ClientOptions{absl::Milliseconds(50)}),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

// A user takes a broker in its runtime directory that runs as itself or as
// root, and refuses one of a third user's.
TEST_F(ClientConnectTest, AUserTakesItsOwnOrRootsListenerAndNoOneElses) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run as other users";
  constexpr uid_t kUser = 65534;
  ASSERT_EQ(chmod(runtime_.path().c_str(), 0755), 0);
  ASSERT_EQ(mkdir(runtime_.Join("capbroker").c_str(), 0755), 0);
  const std::string path = runtime_.Join("capbroker/broker.sock");
  // What Connect says to kUser, with a listener at `path` run as `uid`.
  auto connect_as_user = [&](uid_t uid) -> std::string {
    unlink(path.c_str());
    absl::StatusOr<UniqueFd> listener = ListenAs(path, uid);
    if (!listener.ok()) return listener.status().ToString();
    testing::ChildResult child = testing::RunInChild([&]() -> std::string {
      if (setresgid(kUser, kUser, kUser) != 0 || setresuid(kUser, kUser, kUser) != 0) {
        return "setresuid failed";
      }
      return Client::Connect("", ClientOptions{absl::Milliseconds(50)}).status().ToString();
    });
    return child.output;
  };
  // Taken: the check passed, and the hello goes unanswered.
  EXPECT_THAT(connect_as_user(kUser), StartsWith("DEADLINE_EXCEEDED"));
  EXPECT_THAT(connect_as_user(0), StartsWith("DEADLINE_EXCEEDED"));
  EXPECT_THAT(connect_as_user(65533),
              AllOf(StartsWith("FAILED_PRECONDITION"), HasSubstr("it is run by uid 65533"),
                    HasSubstr("must run as uid 65534 (this user) or root")));
}

// An fd for the broker to send: what it is does not matter to the client.
UniqueFd DevNull() {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd.valid()) << "open(/dev/null): " << std::strerror(errno);
  return fd;
}

// The broker's end of a Client's connection, played by the test. Replies
// are written before the client asks, in the order it will ask: one
// process, no threads, so what the client reads is fixed before it reads.
class BrokerEnd {
 public:
  explicit BrokerEnd(UniqueFd fd) : channel_(std::move(fd)) {}

  // Sends the message `fill` writes, with `fds` (borrowed).
  void Send(const Fill& fill, const std::vector<int>& fds = {}) {
    capnp::MallocMessageBuilder message;
    fill(message.initRoot<schema::Reply>());
    ASSERT_OK(channel_.Send(message, fds));
  }

  // Sends `bytes` with `fds` (borrowed) as one datagram, past the limits
  // Channel keeps.
  void SendRaw(absl::Span<const uint8_t> bytes, const std::vector<int>& fds = {}) {
    ASSERT_EQ(testing::RawSend(channel_.fd(), bytes, fds), 0);
  }

  // The message `fill` writes, sent past the limits Channel keeps.
  void SendUnchecked(const Fill& fill, const std::vector<int>& fds) {
    capnp::MallocMessageBuilder message;
    fill(message.initRoot<schema::Reply>());
    ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> words, wire::Flatten(message));
    kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
    SendRaw(absl::MakeConstSpan(bytes.begin(), bytes.size()), fds);
  }

  // The broker's end, still owned here.
  int fd() const { return channel_.fd(); }

  // The number of requests waiting, read without waiting for more.
  int RequestsWaiting() {
    EXPECT_OK(SetNonBlocking(channel_.fd(), true));
    int requests = 0;
    while (channel_.Receive().ok()) ++requests;
    EXPECT_OK(SetNonBlocking(channel_.fd(), false));
    return requests;
  }

  // The number of requests the client sent until it closed the connection.
  int RequestsUntilHangUp() {
    int requests = 0;
    for (;;) {
      absl::StatusOr<wire::Incoming> request = channel_.Receive();
      if (!request.ok()) {
        EXPECT_THAT(request, StatusIs(absl::StatusCode::kUnavailable));
        return requests;
      }
      ++requests;
    }
  }

 private:
  wire::Channel channel_;
};

Fill ListReply(uint64_t id) {
  return [id](schema::Reply::Builder r) {
    r.setId(id);
    r.initList(1)[0].setName("motd");
  };
}

Fill IncomingEvent(absl::string_view principal) {
  return [principal](schema::Reply::Builder r) {
    r.setId(0);
    auto info = r.initFds(1)[0];
    info.setName("service");
    info.setKind(schema::Kind::CONNECTION);
    info.setAccess(schema::Access::READ_WRITE);
    r.initIncoming().setPrincipal(std::string(principal));
  };
}

// A message of a kind this client does not know, as a later schema could
// add one: a union discriminant past the last member, with `fds` listed.
Fill UnknownKind(uint64_t id, unsigned fds) {
  return [id, fds](schema::Reply::Builder r) {
    r.setId(id);
    r.initFds(fds);
    const uint32_t offset = capnp::Schema::from<schema::Reply>()
                                .getProto()
                                .getStruct()
                                .getDiscriminantOffset();
    const uint16_t unknown = static_cast<uint16_t>(schema::Reply::READY) + 100;
    kj::ArrayPtr<kj::byte> data = capnp::AnyStruct::Builder(kj::mv(r)).getDataSection();
    ASSERT_LE((offset + 1) * sizeof(unknown), data.size());
    std::memcpy(data.begin() + offset * sizeof(unknown), &unknown, sizeof(unknown));
  };
}

// A Client whose hello the test answered, and the broker's end.
class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
    broker_.emplace(std::move(pair.first));
    broker_->Send(HelloReply);
    ASSERT_OK_AND_ASSIGN(Client client, Client::FromFd(std::move(pair.second)));
    client_.emplace(std::move(client));
    fds_before_ = CountOpenFds();
  }

  // After a protocol error named by `why`: the connection is closed with
  // every fd that came on it, later calls say why without sending
  // anything, and the broker saw `requests` requests.
  void ExpectClosedAfter(absl::string_view why, int requests) {
    // An open connection would have the calls below wait for a reply.
    ASSERT_EQ(client_->fd(), -1) << "the connection is still open";
    EXPECT_EQ(CountOpenFds(), fds_before_ - 1);
    auto closed = StatusIs(absl::StatusCode::kUnavailable,
                           AllOf(HasSubstr("closed after an earlier error"), HasSubstr(why)));
    EXPECT_THAT(client_->List(), closed);
    EXPECT_THAT(client_->NextIncoming(), closed);
    EXPECT_EQ(broker_->RequestsUntilHangUp(), requests);
  }

  std::optional<BrokerEnd> broker_;
  std::optional<Client> client_;
  int fds_before_ = 0;
};

// Sends the answer to Ready (request `id`) on `broker`, and has `client`
// say it is ready: from then on it is a service, which takes events.
void SayReady(BrokerEnd& broker, Client& client, uint64_t id) {
  broker.Send([id](schema::Reply::Builder r) {
    r.setId(id);
    r.setReady();
  });
  ASSERT_OK(client.Ready());
}

// A ClientTest whose client said it is ready (request 2): a service's.
class ServiceTest : public ClientTest {
 protected:
  void SetUp() override {
    ClientTest::SetUp();
    SayReady(*broker_, *client_, 2);
  }
};

// What a broker may send while a List (request 2) waits for its reply, and
// what the call then says. Each leaves the client unable to tell which
// reply answers which request: the connection must close.
struct OutOfStep {
  const char* name;
  std::function<void(BrokerEnd&)> send;
  const char* why;  // in the message, after "broken broker reply: "
};

void PrintTo(const OutOfStep& c, std::ostream* os) { *os << c.name; }

class ClientOutOfStepTest : public ClientTest,
                            public ::testing::WithParamInterface<OutOfStep> {};

// Every protocol error is the broker's fault, whichever layer found it:
// kInternal, never a code that blames the request (kInvalidArgument) or
// asks the caller to make room and try again (kResourceExhausted).
void ExpectBrokenReply(const absl::Status& status, const OutOfStep& c) {
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInternal, HasSubstr(c.why)));
  EXPECT_THAT(std::string(status.message()), StartsWith("broken broker reply: "));
}

TEST_P(ClientOutOfStepTest, ClosesTheConnectionAndLaterCallsSayWhy) {
  GetParam().send(*broker_);
  ExpectBrokenReply(client_->List().status(), GetParam());
  ExpectClosedAfter(GetParam().why, 2);
}

std::vector<int> DevNulls(size_t count, const UniqueFd& null) {
  return std::vector<int>(count, null.get());
}

INSTANTIATE_TEST_SUITE_P(
    Replies, ClientOutOfStepTest,
    Values(
        OutOfStep{"ReplyToAnotherRequest", [](BrokerEnd& b) { b.Send(ListReply(7)); },
                  "replied to request 7, expected 2"},
        OutOfStep{"AnotherKindOfReply",
                  [](BrokerEnd& b) { b.Send([](schema::Reply::Builder r) {
                    r.setId(2);
                    r.setReady();
                  }); },
                  "did not answer list"},
        // Fds cut short (the control buffer holds 16) are the first ones
        // sent: never more than the message lists, and never a list past
        // what may come, of which the kernel does not say how many were cut.
        OutOfStep{"FdsBeyondTheListThatDidNotAllArrive",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.SendUnchecked(ListReply(2), DevNulls(wire::kMaxFdsPerMessage + 1, null));
                  },
                  "lists 0 fds but its datagram carried 16 and more that did not fit"},
        OutOfStep{"AListOfMoreFdsThanMayCome",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.SendUnchecked(
                        [](schema::Reply::Builder r) {
                          ListReply(2)(r);
                          r.initFds(wire::kMaxFdsPerMessage + 1);
                        },
                        DevNulls(wire::kMaxFdsPerMessage + 1, null));
                  },
                  "lists 17 fds but its datagram carried 16 and more that did not fit (at most "
                  "16 may come)"},
        OutOfStep{"OversizedDatagram",
                  [](BrokerEnd& b) {
                    b.SendRaw(std::vector<uint8_t>(wire::kMaxMessageBytes + 8, 0));
                  },
                  "larger than"},
        OutOfStep{"BadFraming",
                  [](BrokerEnd& b) {
                    b.SendRaw(std::vector<uint8_t>{99, 0, 0, 0, 1, 0, 0, 0});
                  },
                  "segments"},
        OutOfStep{"EmptyDatagram",
                  [](BrokerEnd& b) { b.SendRaw(std::vector<uint8_t>()); },
                  "broken broker reply: empty message"},
        OutOfStep{"PartWord",
                  [](BrokerEnd& b) { b.SendRaw(std::vector<uint8_t>(12, 0)); },
                  "not a whole number of 8-byte words"},
        OutOfStep{"MalformedMessage",
                  [](BrokerEnd& b) {
                    // One segment of one word: a root pointer far out of it.
                    std::vector<uint8_t> bytes(16, 0xff);
                    std::memset(bytes.data(), 0, 8);
                    bytes[4] = 1;
                    b.SendRaw(bytes);
                  },
                  "broken broker reply: Cap'n Proto cannot read it: "},
        OutOfStep{"ErrorReplyWithFdsItDoesNotList",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send([](schema::Reply::Builder r) {
                      r.setId(2);
                      r.initError().setCode(schema::ErrorCode::NOT_FOUND);
                    }, DevNulls(3, null));
                  },
                  "lists 0 fds but its datagram carried 3"},
        OutOfStep{"ReplyListingFdsItDoesNotCarry",
                  [](BrokerEnd& b) {
                    b.Send([](schema::Reply::Builder r) {
                      ListReply(2)(r);
                      r.initFds(1);
                    });
                  },
                  "lists 1 fds but its datagram carried 0"},
        OutOfStep{"UnknownKindWithFdsItDoesNotList",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send(UnknownKind(0, 0), DevNulls(1, null));
                  },
                  "lists 0 fds but its datagram carried 1"},
        // capctl, say, never takes events: they would stay queued, and
        // their fds open, until it exits.
        OutOfStep{"EventToAClientThatIsNoService",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send(IncomingEvent("alice"), {null.get()});
                    b.Send(ListReply(2));  // what would answer the call
                  },
                  "incoming connection to a client that is no service (it has not said ready)"},
        // Fds on a reply that carries none: only a grant does.
        OutOfStep{"ListReplyCarryingAnFd",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send([](schema::Reply::Builder r) {
                      ListReply(2)(r);
                      r.initFds(1);
                    }, {null.get()});
                  },
                  "reply to request 2 lists 1 fds; its answer carries none"},
        OutOfStep{"ErrorCarryingFds",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send([](schema::Reply::Builder r) {
                      r.setId(2);
                      r.initError().setCode(schema::ErrorCode::NOT_FOUND);
                      r.initFds(2);
                    }, DevNulls(2, null));
                  },
                  "sent an error with 2 fds; an error carries none"},
        OutOfStep{"ErrorWithIdZeroCarryingAnFd",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send([](schema::Reply::Builder r) {
                      r.setId(0);
                      r.initError().setCode(schema::ErrorCode::INVALID_REQUEST);
                      r.initFds(1);
                    }, {null.get()});
                  },
                  "sent an error with 1 fds; an error carries none"}),
    [](const ::testing::TestParamInfo<OutOfStep>& info) { return info.param.name; });

// A service's events that no broker sends, while a List (request 3) waits.
class ServiceOutOfStepTest : public ServiceTest,
                             public ::testing::WithParamInterface<OutOfStep> {};

TEST_P(ServiceOutOfStepTest, ClosesTheConnectionAndLaterCallsSayWhy) {
  GetParam().send(*broker_);
  ExpectBrokenReply(client_->List().status(), GetParam());
  ExpectClosedAfter(GetParam().why, 3);
}

INSTANTIATE_TEST_SUITE_P(
    Events, ServiceOutOfStepTest,
    Values(
        OutOfStep{"EventWithTwoFds",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send([](schema::Reply::Builder r) {
                      IncomingEvent("alice")(r);
                      r.initFds(2);
                    }, DevNulls(2, null));
                  },
                  "with 2 fds"},
        // Each queued event would hold its principal's copy: no longer
        // than a policy's names.
        OutOfStep{"EventWithAPrincipalLongerThanAName",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send(IncomingEvent(std::string(wire::kMaxNameBytes + 1, 'a')),
                           {null.get()});
                    b.Send(ListReply(3));  // what would answer the call
                  },
                  "(65 bytes) is no policy's name (1 to 64 of"},
        // The service's log lines name the peer by its principal: a
        // newline or an escape sequence in it would go there raw. The
        // error shows it escaped.
        OutOfStep{"EventWithAPrincipalThatIsNoName",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send(IncomingEvent("alice\n\x1b[2Jroot"), {null.get()});
                    b.Send(ListReply(3));  // what would answer the call
                  },
                  "whose principal 'alice\\x0a\\x1b[2Jroot' (14 bytes) is no policy's name"},
        OutOfStep{"EventWithAnEmptyPrincipal",
                  [](BrokerEnd& b) {
                    UniqueFd null = DevNull();
                    b.Send(IncomingEvent(""), {null.get()});
                    b.Send(ListReply(3));  // what would answer the call
                  },
                  "whose principal '' (0 bytes) is no policy's name"}),
    [](const ::testing::TestParamInfo<OutOfStep>& info) { return info.param.name; });

// A client the broker refused Ready (request 2) is no service: an event
// after the refusal is a protocol error, as one before Ready() is, and its
// fd is not held.
TEST_F(ClientTest, EventAfterARefusedReadyIsAProtocolError) {
  broker_->Send([](schema::Reply::Builder r) {
    r.setId(2);
    r.initError().setCode(schema::ErrorCode::PERMISSION_DENIED);
  });
  EXPECT_THAT(client_->Ready(), StatusIs(absl::StatusCode::kPermissionDenied));
  {
    UniqueFd null = DevNull();
    broker_->Send(IncomingEvent("alice"), {null.get()});
  }
  broker_->Send(ListReply(3));  // what would answer the call
  constexpr char kWhy[] =
      "incoming connection to a client that is no service (it has not said ready)";
  EXPECT_THAT(client_->List(), StatusIs(absl::StatusCode::kInternal, HasSubstr(kWhy)));
  ExpectClosedAfter(kWhy, 3);  // hello, Ready, List
}

// The other calls that take no fds refuse a reply with fds the same way.
struct FdsOnAReply {
  const char* name;
  std::function<absl::Status(Client&)> call;
  Fill reply;  // for request 2, listing one fd
};

void PrintTo(const FdsOnAReply& c, std::ostream* os) { *os << c.name; }

class ClientFdsOnAReplyTest : public ClientTest,
                              public ::testing::WithParamInterface<FdsOnAReply> {};

TEST_P(ClientFdsOnAReplyTest, ClosesTheConnectionAndTheFd) {
  {
    UniqueFd null = DevNull();
    broker_->Send([&](schema::Reply::Builder r) {
      GetParam().reply(r);
      r.setId(2);
      r.initFds(1);
    }, {null.get()});
  }
  const char* why = "reply to request 2 lists 1 fds; its answer carries none";
  EXPECT_THAT(GetParam().call(*client_), StatusIs(absl::StatusCode::kInternal, HasSubstr(why)));
  ExpectClosedAfter(why, 2);
}

INSTANTIATE_TEST_SUITE_P(
    Calls, ClientFdsOnAReplyTest,
    Values(FdsOnAReply{"Ready", [](Client& c) { return c.Ready(); },
                       [](schema::Reply::Builder r) { r.setReady(); }},
           FdsOnAReply{"Status", [](Client& c) { return c.Status().status(); },
                       [](schema::Reply::Builder r) { r.initStatus().setVersion(1); }},
           FdsOnAReply{"Services", [](Client& c) { return c.Services().status(); },
                       [](schema::Reply::Builder r) { r.initServices(1)[0].setName("svc"); }},
           FdsOnAReply{"ServicePage", [](Client& c) { return c.Services().status(); },
                       [](schema::Reply::Builder r) {
                         r.initServicePage().initEntries(1)[0].setName("svc");
                       }},
           FdsOnAReply{"CapabilityPage", [](Client& c) { return c.List().status(); },
                       [](schema::Reply::Builder r) {
                         r.initCapabilities().initEntries(1)[0].setName("motd");
                       }}),
    [](const ::testing::TestParamInfo<FdsOnAReply>& info) { return info.param.name; });

// The hello's answer carries no fds either: the connection is refused.
TEST(ClientFromFdTest, AHelloAnswerCarryingAnFdIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  BrokerEnd broker(std::move(pair.first));
  {
    UniqueFd null = DevNull();
    broker.Send([](schema::Reply::Builder r) {
      HelloReply(r);
      r.initFds(1);
    }, {null.get()});
  }
  const int fds_before = CountOpenFds();
  EXPECT_THAT(Client::FromFd(std::move(pair.second)),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("reply to request 1 lists 1 fds; its answer carries none")));
  EXPECT_EQ(CountOpenFds(), fds_before - 1);  // the client's end, and the fd that came
}

// A grant for request 2 with one fd described as `name`, `kind`, `access`
// and `path`.
Fill GrantReply(absl::string_view name, schema::Kind kind, schema::Access access,
                absl::string_view path = "") {
  return [=](schema::Reply::Builder r) {
    r.setId(2);
    r.setGranted();
    auto info = r.initFds(1)[0];
    info.setName(std::string(name));
    info.setKind(kind);
    info.setAccess(access);
    info.setPath(std::string(path));
  };
}

using Call = std::function<absl::Status(Client&)>;

Call AcquireMotd(schema::Access access) {
  return [access](Client& c) { return c.Acquire("motd", access).status(); };
}
Call OpenJob(schema::Access access) {
  return [access](Client& c) {
    BeneathOptions options;
    options.access = access;
    return c.OpenBeneath("spool", "jobs/1", options).status();
  };
}
Call ConnectEcho() {
  return [](Client& c) { return c.ConnectService("echo").status(); };
}

// A grant that does not answer its request: the fd might be anything.
struct WrongGrant {
  const char* name;
  Call call;
  Fill reply;
  const char* why;
  size_t fds = 1;  // how many fds come with the reply, as it lists
};

void PrintTo(const WrongGrant& c, std::ostream* os) { *os << c.name; }

class ClientWrongGrantTest : public ClientTest,
                             public ::testing::WithParamInterface<WrongGrant> {};

TEST_P(ClientWrongGrantTest, ClosesTheConnectionAndTheFd) {
  {
    std::vector<UniqueFd> fds;
    std::vector<int> raw;
    for (size_t i = 0; i < GetParam().fds; ++i) {
      fds.push_back(DevNull());
      raw.push_back(fds.back().get());
    }
    broker_->Send(GetParam().reply, raw);
  }
  EXPECT_THAT(GetParam().call(*client_),
              StatusIs(absl::StatusCode::kInternal, HasSubstr(GetParam().why)));
  ExpectClosedAfter(GetParam().why, 2);
}

constexpr schema::Access kUnknownAccess = static_cast<schema::Access>(99);

INSTANTIATE_TEST_SUITE_P(
    Grants, ClientWrongGrantTest,
    Values(
        WrongGrant{"AnotherCapability", AcquireMotd(schema::Access::READ),
                   GrantReply("secret", schema::Kind::FILE, schema::Access::READ),
                   "granted 'secret' for a request for 'motd'"},
        WrongGrant{"WiderAccess", AcquireMotd(schema::Access::READ),
                   GrantReply("motd", schema::Kind::FILE, schema::Access::READ_WRITE),
                   "granted readWrite access to 'motd' for a request for read access"},
        WrongGrant{"NarrowerAccess", AcquireMotd(schema::Access::READ_WRITE),
                   GrantReply("motd", schema::Kind::FILE, schema::Access::READ),
                   "granted read access"},
        WrongGrant{"NoAccess", AcquireMotd(schema::Access::UNSPECIFIED),
                   GrantReply("motd", schema::Kind::FILE, schema::Access::UNSPECIFIED),
                   "granted unspecified access"},
        WrongGrant{"AccessTheSchemaDoesNotKnow", AcquireMotd(schema::Access::UNSPECIFIED),
                   GrantReply("motd", schema::Kind::FILE, kUnknownAccess),
                   "granted unknown access"},
        WrongGrant{"AcquireGrantingAConnection", AcquireMotd(schema::Access::UNSPECIFIED),
                   GrantReply("motd", schema::Kind::CONNECTION, schema::Access::READ_WRITE),
                   "granted a connection for 'motd'"},
        WrongGrant{"AcquireGrantingAPath", AcquireMotd(schema::Access::READ),
                   GrantReply("motd", schema::Kind::FILE, schema::Access::READ, "x"),
                   "granted path 'x' of 'motd'"},
        WrongGrant{"AnotherPath", OpenJob(schema::Access::READ),
                   GrantReply("spool", schema::Kind::FILE, schema::Access::READ, "jobs/2"),
                   "granted path 'jobs/2' of 'spool' for a request for 'jobs/1'"},
        WrongGrant{"AnotherDirectory", OpenJob(schema::Access::READ),
                   GrantReply("motd", schema::Kind::FILE, schema::Access::READ, "jobs/1"),
                   "granted 'motd' for a request for 'spool'"},
        WrongGrant{"OpenBeneathGrantingAConnection", OpenJob(schema::Access::READ),
                   GrantReply("spool", schema::Kind::CONNECTION, schema::Access::READ, "jobs/1"),
                   "granted a connection for 'spool'"},
        WrongGrant{"AnotherService", ConnectEcho(),
                   GrantReply("kvstore", schema::Kind::CONNECTION, schema::Access::READ_WRITE),
                   "granted 'kvstore' for a request for 'echo'"},
        // A hostile broker's text is shown escaped: it cannot forge a log line.
        WrongGrant{"ANameWithControlCharacters", AcquireMotd(schema::Access::READ),
                   GrantReply("x\n\x1b[31mFAKE LOG LINE", schema::Kind::FILE,
                              schema::Access::READ),
                   "broker granted 'x\\x0a\\x1b[31mFAKE LOG LINE' for a request for 'motd'"},
        WrongGrant{"ConnectGrantingAFile", ConnectEcho(),
                   GrantReply("echo", schema::Kind::FILE, schema::Access::READ_WRITE),
                   "granted a file for 'echo'"},
        // A grant is a reply of kind granted carrying exactly one fd.
        WrongGrant{"AReplyOfAnotherKindCarryingAnFd", AcquireMotd(schema::Access::READ),
                   [](schema::Reply::Builder r) {
                     GrantReply("motd", schema::Kind::FILE, schema::Access::READ)(r);
                     r.setReady();
                   },
                   "broker reply does not carry one capability (1 fds)"},
        WrongGrant{"AGrantWithTwoFds", AcquireMotd(schema::Access::READ),
                   [](schema::Reply::Builder r) {
                     GrantReply("motd", schema::Kind::FILE, schema::Access::READ)(r);
                     auto infos = r.initFds(2);
                     for (auto info : infos) {
                       info.setName("motd");
                       info.setKind(schema::Kind::FILE);
                       info.setAccess(schema::Access::READ);
                     }
                   },
                   "broker reply does not carry one capability (2 fds)", 2}),
    [](const ::testing::TestParamInfo<WrongGrant>& info) { return info.param.name; });

// A hostile broker's text may run to the size of a datagram: the status
// shows its two ends, as Shown does, not all of it.
TEST_F(ClientTest, ALongGrantedPathIsShownBounded) {
  {
    UniqueFd fd = DevNull();
    broker_->Send(GrantReply("spool", schema::Kind::FILE, schema::Access::READ,
                             std::string(4000, 'a')),
                  {fd.get()});
  }
  const std::string shown = std::string(128, 'a') + "... (3744 bytes left out) ..." +
                            std::string(128, 'a');
  EXPECT_THAT(OpenJob(schema::Access::READ)(*client_),
              StatusIs(absl::StatusCode::kInternal,
                       "broken broker reply: broker granted path '" + shown +
                           "' of 'spool' for a request for 'jobs/1'"));
}

// So is an error the broker sends for no request, escaped.
TEST_F(ServiceTest, AnErrorForNoRequestIsShownEscapedAndBounded) {
  broker_->Send([](schema::Reply::Builder r) {
    r.setId(0);
    auto error = r.initError();
    error.setCode(schema::ErrorCode::INTERNAL);
    error.setMessage("x\n\x1b[31mFAKE LOG LINE" + std::string(4000, 'a'));
  });
  absl::StatusOr<IncomingConnection> incoming = client_->NextIncoming();
  EXPECT_THAT(incoming, StatusIs(absl::StatusCode::kInternal,
                                 AllOf(HasSubstr("the broker sent an error for no request: "
                                                 "INTERNAL: x\\x0a\\x1b[31mFAKE LOG LINE"),
                                       HasSubstr(" bytes left out) ..."))));
  EXPECT_LE(incoming.status().message().size(), 640u);
}

// What the broker sends for each kind of request is taken as it is.
TEST_F(ClientTest, GrantsThatAnswerTheirRequestsAreTaken) {
  const struct {
    Call call;
    Fill reply;
  } grants[] = {
      {AcquireMotd(schema::Access::UNSPECIFIED),
       GrantReply("motd", schema::Kind::FILE, schema::Access::APPEND)},
      {AcquireMotd(schema::Access::READ),
       GrantReply("motd", schema::Kind::MEMORY, schema::Access::READ)},
      {OpenJob(schema::Access::WRITE),
       GrantReply("spool", schema::Kind::FILE, schema::Access::WRITE, "jobs/1")},
      {ConnectEcho(), GrantReply("echo", schema::Kind::CONNECTION, schema::Access::READ_WRITE)},
  };
  uint64_t id = 2;
  for (const auto& grant : grants) {
    {
      UniqueFd fd = DevNull();
      broker_->Send([&](schema::Reply::Builder r) {
        grant.reply(r);
        r.setId(id);
      }, {fd.get()});
    }
    EXPECT_OK(grant.call(*client_));
    ++id;
  }
  EXPECT_EQ(CountOpenFds(), fds_before_);
}

TEST_F(ClientTest, AnErrorWithIdZeroAnswersTheCall) {
  // The broker's answer to a request it could not read (its id unknown).
  broker_->Send([](schema::Reply::Builder r) {
    r.setId(0);
    auto error = r.initError();
    error.setCode(schema::ErrorCode::INVALID_REQUEST);
    error.setMessage("message claims 9 segments; at most 8 are allowed");
  });
  EXPECT_THAT(client_->List(), StatusIs(absl::StatusCode::kInvalidArgument,
                                        "message claims 9 segments; at most 8 are allowed"));
  // The connection is in step: the next call gets its own answer.
  broker_->Send(ListReply(3));
  EXPECT_OK(client_->List());
}

TEST_F(ServiceTest, UnknownKindsAreSkippedWithTheirFdsClosed) {
  {
    UniqueFd a = DevNull(), b = DevNull();
    broker_->Send(UnknownKind(0, 2), {a.get(), b.get()});
    // A known kind that is no event is skipped the same way.
    broker_->Send([](schema::Reply::Builder r) {
      r.setId(0);
      r.setReady();
    });
    broker_->Send(ListReply(3));
    // While waiting for a connection, too.
    broker_->Send(UnknownKind(0, 1), {a.get()});
    broker_->Send(IncomingEvent("alice"), {a.get()});
  }
  ASSERT_OK_AND_ASSIGN(std::vector<CapabilityInfo> list, client_->List());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "motd");
  {
    ASSERT_OK_AND_ASSIGN(IncomingConnection incoming, client_->NextIncoming());
    EXPECT_EQ(incoming.principal, "alice");
  }
  EXPECT_EQ(CountOpenFds(), fds_before_);
}

TEST_F(ClientTest, AReplyWhileWaitingForAConnectionClosesTheConnection) {
  broker_->Send(ListReply(5));
  EXPECT_THAT(client_->NextIncoming(), StatusIs(absl::StatusCode::kInternal,
                                                HasSubstr("unexpected reply to request 5")));
  ExpectClosedAfter("unexpected reply to request 5", 1);
}

// Every call on a Client that was moved from (the object is left behind,
// its connection gone with the move) says so, sends nothing, and touches
// no fd.
void ExpectMovedFrom(Client& moved_from) {
  EXPECT_EQ(moved_from.fd(), -1);
  const int fds_before = CountOpenFds();
  auto moved = StatusIs(absl::StatusCode::kUnavailable, std::string("this Client was moved from"));
  EXPECT_THAT(moved_from.NextIncoming(), moved);
  EXPECT_THAT(moved_from.Acquire("motd"), moved);
  EXPECT_THAT(moved_from.OpenBeneath("dir", "file"), moved);
  EXPECT_THAT(moved_from.List(), moved);
  EXPECT_THAT(moved_from.Status(), moved);
  EXPECT_THAT(moved_from.ConnectService("service"), moved);
  EXPECT_THAT(moved_from.Services(), moved);
  EXPECT_THAT(moved_from.Ready(), moved);
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST_F(ClientTest, AClientMovedFromByConstructionSaysSo) {
  Client moved_to(std::move(*client_));
  ExpectMovedFrom(*client_);
  // The connection went along: its requests are answered in step.
  broker_->Send(ListReply(2));
  EXPECT_OK(moved_to.List());
}

TEST_F(ClientTest, AClientMovedFromByAssignmentSaysSo) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  BrokerEnd other_broker(std::move(pair.first));
  other_broker.Send(HelloReply);
  ASSERT_OK_AND_ASSIGN(Client other, Client::FromFd(std::move(pair.second)));
  other = std::move(*client_);
  ExpectMovedFrom(*client_);
  broker_->Send(ListReply(2));
  EXPECT_OK(other.List());
  // The connection `other` held before is closed, not leaked: what is
  // open beyond the fixture's two fds is other_broker's end.
  EXPECT_EQ(other_broker.RequestsUntilHangUp(), 1);
  EXPECT_EQ(CountOpenFds(), fds_before_ + 1);
}

// TryAccept reads with the socket non-blocking: nothing to read yet is no
// protocol error.
TEST_F(ServiceTest, NothingToReadYetLeavesTheConnectionOpen) {
  ASSERT_OK(SetNonBlocking(client_->fd(), true));
  EXPECT_THAT(client_->NextIncoming(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(SetNonBlocking(client_->fd(), false));
  {
    UniqueFd end = DevNull();
    broker_->Send(IncomingEvent("alice"), {end.get()});
  }
  EXPECT_OK(client_->NextIncoming());
  EXPECT_EQ(CountOpenFds(), fds_before_);
}

// The broker's refusal of request `id`, "no such thing": an answer that
// shows the request was sent.
Fill NotFoundReply(uint64_t id) {
  return [id](schema::Reply::Builder r) {
    r.setId(id);
    auto error = r.initError();
    error.setCode(schema::ErrorCode::NOT_FOUND);
    error.setMessage("no such thing");
  };
}

// A name or path longer than the wire allows is refused before anything is
// sent, in the broker's words, naming the argument and its limit; even one
// too long for a datagram, which the broker would never see. Nothing is
// sent, so no reply is owed: the next request is answered as request 2.
TEST_F(ClientTest, ANameOrPathPastTheWiresLimitIsRefusedBeforeSending) {
  const std::string name(wire::kMaxNameBytes + 1, 'a');
  const std::string huge(wire::kMaxMessageBytes + 1000, 'a');
  ASSERT_EQ(broker_->RequestsWaiting(), 1) << "the hello";
  // A request sent after all would wait for an answer that never comes:
  // bounded, it fails the test instead (the client honours SO_RCVTIMEO).
  const timeval bound{5, 0};
  ASSERT_EQ(setsockopt(client_->fd(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)), 0);
  const auto invalid = [](const std::string& why) {
    return StatusIs(absl::StatusCode::kInvalidArgument, why);
  };
  EXPECT_THAT(client_->Acquire(name), invalid("capability name is 65 bytes; at most 64"));
  EXPECT_THAT(client_->Acquire(huge), invalid("capability name is 66536 bytes; at most 64"));
  EXPECT_THAT(client_->OpenBeneath(name, "job"), invalid("directory name is 65 bytes; at most 64"));
  EXPECT_THAT(client_->OpenBeneath("spool", std::string(wire::kMaxPathBytes + 1, 'p')),
              invalid("path is 4096 bytes; at most 4095"));
  EXPECT_THAT(client_->OpenBeneath("spool", huge), invalid("path is 66536 bytes; at most 4095"));
  EXPECT_THAT(client_->ConnectService(name), invalid("service name is 65 bytes; at most 64"));
  EXPECT_THAT(client_->Acquire(""), invalid("capability name is empty"));
  EXPECT_THAT(client_->OpenBeneath("spool", ""), invalid("path is empty"));
  EXPECT_EQ(broker_->RequestsWaiting(), 0);
  broker_->Send(ListReply(2));
  EXPECT_OK(client_->List());
}

// Names and paths at the wire's limits are sent: the broker's answer is
// the call's.
TEST_F(ClientTest, ANameOrPathAtTheWiresLimitIsSent) {
  const std::string name(wire::kMaxNameBytes, 'a');
  broker_->Send(NotFoundReply(2));
  EXPECT_THAT(client_->Acquire(name), StatusIs(absl::StatusCode::kNotFound, "no such thing"));
  broker_->Send(NotFoundReply(3));
  EXPECT_THAT(client_->OpenBeneath(name, std::string(wire::kMaxPathBytes, 'p')),
              StatusIs(absl::StatusCode::kNotFound, "no such thing"));
  broker_->Send(NotFoundReply(4));
  EXPECT_THAT(client_->ConnectService(name),
              StatusIs(absl::StatusCode::kNotFound, "no such thing"));
}

// RLIMIT_NOFILE's soft limit set for the object's lifetime, so that a
// failed assertion does not leave the test process at it.
class SoftFdLimit {
 public:
  explicit SoftFdLimit(rlim_t soft) {
    EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0) << std::strerror(errno);
    rlimit limit = saved_;
    limit.rlim_cur = soft;
    EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0) << std::strerror(errno);
  }
  ~SoftFdLimit() { EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &saved_), 0) << std::strerror(errno); }

 private:
  rlimit saved_{};
};

// A service's call to the broker reads every event ahead of its reply. When
// the fd table fills meanwhile (connects wait while the handler works), the
// kernel cannot install an event's fd, closes it, and says so (MSG_CTRUNC):
// that event is dropped (its client sees end of stream), not the broker
// connection, and the call gets its reply.
TEST_F(ServiceTest, EventsPastTheFdTableAreDroppedAndTheCallIsAnswered) {
  constexpr int kEvents = 10;
  constexpr size_t kRoom = 3;
  {
    UniqueFd end = DevNull();
    for (int i = 0; i < kEvents; ++i) {
      broker_->Send(IncomingEvent(absl::StrCat("client", i)), {end.get()});
    }
  }
  broker_->Send(ListReply(3));
  {
    SoftFdLimit limit(testing::SoftLimitLeavingRoomFor(kRoom));
    EXPECT_OK(client_->List());
  }
  ASSERT_NE(client_->fd(), -1) << "the connection was closed";
  EXPECT_EQ(client_->queued_incoming(), kRoom);
  EXPECT_EQ(client_->dropped_incoming(), kEvents - kRoom);
  // In step: the next call gets its own reply, and the events that fit
  // are there, first come first.
  broker_->Send(ListReply(4));
  EXPECT_OK(client_->List());
  for (size_t i = 0; i < kRoom; ++i) {
    ASSERT_OK_AND_ASSIGN(IncomingConnection incoming, client_->NextIncoming());
    EXPECT_EQ(incoming.principal, absl::StrCat("client", i));
  }
  EXPECT_EQ(client_->queued_incoming(), 0u);
  EXPECT_EQ(CountOpenFds(), fds_before_);
}

// When the reply's own fd is what did not fit, the call fails saying why and
// what to do; the connection stays in step for the next one.
TEST_F(ServiceTest, AGrantWhoseFdDidNotFitFailsTheCallAndNotTheConnection) {
  constexpr size_t kRoom = 2;
  {
    UniqueFd end = DevNull();
    broker_->Send(IncomingEvent("alice"), {end.get()});
    broker_->Send(IncomingEvent("bob"), {end.get()});
    broker_->Send(
        [](schema::Reply::Builder r) {
          GrantReply("motd", schema::Kind::FILE, schema::Access::READ)(r);
          r.setId(3);
        },
        {end.get()});
  }
  {
    SoftFdLimit limit(testing::SoftLimitLeavingRoomFor(kRoom));
    EXPECT_THAT(client_->Acquire("motd", schema::Access::READ),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         AllOf(HasSubstr("did not fit"), HasSubstr("RLIMIT_NOFILE"))));
  }
  ASSERT_NE(client_->fd(), -1) << "the connection was closed";
  EXPECT_EQ(client_->queued_incoming(), kRoom);
  EXPECT_EQ(client_->dropped_incoming(), 0u);
  {
    UniqueFd end = DevNull();
    broker_->Send(
        [](schema::Reply::Builder r) {
          GrantReply("motd", schema::Kind::FILE, schema::Access::READ)(r);
          r.setId(4);
        },
        {end.get()});
  }
  ASSERT_OK_AND_ASSIGN(Capability motd, client_->Acquire("motd", schema::Access::READ));
  EXPECT_TRUE(motd.fd.valid());
}

// Past kMaxQueuedEvents (4096) waiting events, one more is dropped, its fd
// closed, rather than the connection broken off.
TEST_F(ServiceTest, AnEventPastTheQueuesLimitIsDropped) {
  constexpr size_t kMaxQueued = 4096;
  rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  const rlim_t wanted = 2 * kMaxQueued;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
    GTEST_SKIP() << "RLIMIT_NOFILE's hard limit " << limit.rlim_max << " is below " << wanted;
  }
  std::optional<SoftFdLimit> raised;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) raised.emplace(wanted);
  // The broker's side writes from a thread: that many datagrams do not fit
  // in the socket's buffer at once.
  std::thread broker([&] {
    UniqueFd end = DevNull();
    for (size_t i = 0; i <= kMaxQueued; ++i) broker_->Send(IncomingEvent("alice"), {end.get()});
    broker_->Send(ListReply(3));
  });
  absl::Status listed = client_->List().status();
  broker.join();
  EXPECT_OK(listed);
  ASSERT_NE(client_->fd(), -1) << "the connection was closed";
  EXPECT_EQ(client_->queued_incoming(), kMaxQueued);
  EXPECT_EQ(client_->dropped_incoming(), 1u);
  EXPECT_EQ(CountOpenFds(), fds_before_ + static_cast<int>(kMaxQueued));
}

// The broker refuses a connection at admission (over a quota) with one
// id-0 error, then closes it: before the client's hello is sent (the send
// fails: EPIPE), or with the hello arrived and unread (ECONNRESET). Either
// way the reason answers the hello, not a broken pipe or a reset.
TEST(ClientFromFdTest, ARefusalAtAdmissionAnswersTheHello) {
  for (bool hello_arrived : {false, true}) {
    SCOPED_TRACE(hello_arrived ? "hello arrived first" : "refused before the hello");
    ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
    if (hello_arrived) {
      const uint8_t hello[8] = {};
      ASSERT_EQ(testing::RawSend(pair.first.get(), hello), 0);
    }
    {
      wire::Channel broker(std::move(pair.second));
      capnp::MallocMessageBuilder message;
      auto reply = message.initRoot<schema::Reply>();
      reply.setId(0);
      auto error = reply.initError();
      error.setCode(schema::ErrorCode::RESOURCE_EXHAUSTED);
      error.setMessage("uid 1000 has 1 connections open (--max-connections-per-uid)");
      ASSERT_OK(broker.Send(message));
    }
    EXPECT_THAT(Client::FromFd(std::move(pair.first)),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("(--max-connections-per-uid)")));
  }
}

// A connection inherited from elsewhere may be any fd, with any flags.
TEST(ClientFromFdTest, RefusesAnythingButASeqpacketSocket) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd stream(fds[0]);
  BrokerEnd other_end{UniqueFd(fds[1])};
  // On a stream socket, the hello would even be answered.
  other_end.SendUnchecked(HelloReply, {});
  EXPECT_THAT(Client::FromFd(std::move(stream)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SOCK_SEQPACKET")));
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd write_end(fds[1]);
  EXPECT_THAT(Client::FromFd(UniqueFd(fds[0])),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a socket")));
}

// A listening socket, or one never connected, is no connection: the
// hello could not go out, and "the peer closed the connection" would
// mislead.
TEST(ClientFromFdTest, RefusesAListeningOrUnconnectedSocket) {
  testing::TempDir dir;
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(dir.Join("s.sock")));
  ASSERT_OK_AND_ASSIGN(UniqueFd listener,
                       TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "socket"));
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                 address.length),
            0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  const int listening = listener.get();
  EXPECT_THAT(Client::FromFd(std::move(listener)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("fd ", listening,
                                    " is a listening socket; pass a connected one")));
  ASSERT_OK_AND_ASSIGN(UniqueFd unconnected,
                       TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "socket"));
  const int fd = unconnected.get();
  EXPECT_THAT(Client::FromFd(std::move(unconnected)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("fd ", fd, " is not connected; pass a connected socket")));
}

// A broker, in a thread of its own, that answers the hello and then every
// list or services request with the next of `pages` (`more` set on each
// but the last, the last repeated should the client ask again), as a
// compromised broker could; it records the startAfter of each request ("-"
// when the request asked for no page). A page is the entries' names; to
// services, a name ending in '*' is an instance removed from the policy
// (ServiceInfo.removed) of the name before the '*', and the startAfter
// recorded for a request after one ends in '*' too.
class ScriptedPager {
 public:
  using Page = std::vector<std::string>;
  explicit ScriptedPager(std::vector<Page> pages) : pages_(std::move(pages)) {}

  // Lists through a Client connected to this broker.
  absl::StatusOr<std::vector<std::string>> List() {
    return Names<CapabilityInfo>([](Client& c) { return c.List(); });
  }
  // The same for services, in the '*' notation of the pages.
  absl::StatusOr<std::vector<std::string>> Services() {
    return Names<ServiceInfo>([](Client& c) { return c.Services(); });
  }

  // Every entry of a services page gets this lastExit.
  void set_last_exit(std::string text) { last_exit_ = std::move(text); }

  const std::vector<std::string>& start_afters() const { return start_afters_; }

 private:
  template <typename Info, typename Call>
  absl::StatusOr<std::vector<std::string>> Names(Call call) {
    CB_ASSIGN_OR_RETURN(auto pair, wire::SeqpacketPair());
    std::thread broker([this, end = std::move(pair.first)]() mutable { Serve(std::move(end)); });
    absl::StatusOr<std::vector<Info>> entries;
    {
      absl::StatusOr<Client> client = Client::FromFd(std::move(pair.second));
      entries = client.ok() ? call(*client) : client.status();
    }  // the client hangs up: the broker's thread ends
    broker.join();
    if (!entries.ok()) return entries.status();
    std::vector<std::string> names;
    for (const Info& e : *entries) names.push_back(Notation(e));
    return names;
  }
  static std::string Notation(const CapabilityInfo& c) { return c.name; }
  static std::string Notation(const ServiceInfo& s) { return s.name + (s.removed ? "*" : ""); }

  void Serve(UniqueFd end) {
    wire::Channel channel(std::move(end));
    for (;;) {
      absl::StatusOr<wire::Incoming> request = channel.Receive();
      if (!request.ok()) return;  // the client hung up
      capnp::MallocMessageBuilder message;
      auto reply = message.initRoot<schema::Reply>();
      auto asked = request->reader->getRoot<schema::Request>();
      reply.setId(asked.getId());
      const Page& page = pages_[std::min(next_, pages_.size() - 1)];
      const bool more = next_ + 1 < pages_.size();
      if (asked.isHello()) {
        reply.initHello().setVersion(schema::PROTOCOL_VERSION);
      } else if (asked.isList()) {
        start_afters_.push_back(asked.hasListPage() ? asked.getListPage().getStartAfter().cStr()
                                                    : "-");
        auto out = reply.initCapabilities();
        auto entries = out.initEntries(static_cast<unsigned>(page.size()));
        for (size_t i = 0; i < page.size(); ++i) {
          entries[i].setName(page[i]);
          entries[i].setPath("/x");
        }
        out.setMore(more);
        ++next_;
      } else {
        auto after = asked.getServicesPage();
        start_afters_.push_back(
            !asked.hasServicesPage()
                ? "-"
                : absl::StrCat(after.getStartAfter().cStr(), after.getStartAfterRemoved() ? "*" : ""));
        auto out = reply.initServicePage();
        auto entries = out.initEntries(static_cast<unsigned>(page.size()));
        for (size_t i = 0; i < page.size(); ++i) {
          const bool removed = absl::EndsWith(page[i], "*");
          entries[i].setName(removed ? page[i].substr(0, page[i].size() - 1) : page[i]);
          entries[i].setRemoved(removed);
          entries[i].setLastExit(last_exit_);
        }
        out.setMore(more);
        ++next_;
      }
      if (!channel.Send(message).ok()) return;
    }
  }

  std::vector<Page> pages_;
  size_t next_ = 0;
  std::string last_exit_;
  std::vector<std::string> start_afters_;
};

// Each kind of paged reply, with its limit on entries.
struct Paged {
  const char* kind;
  absl::StatusOr<std::vector<std::string>> (ScriptedPager::*call)();
  size_t max_entries;
};
void PrintTo(const Paged& p, std::ostream* os) { *os << p.kind; }

class ClientPagesTest : public ::testing::TestWithParam<Paged> {
 protected:
  absl::StatusOr<std::vector<std::string>> Call(ScriptedPager& pager) {
    return (pager.*GetParam().call)();
  }
};

INSTANTIATE_TEST_SUITE_P(
    ListAndServices, ClientPagesTest,
    ::testing::Values(Paged{"list", &ScriptedPager::List, wire::kMaxListEntries},
                      Paged{"services", &ScriptedPager::Services, wire::kMaxServiceEntries}),
    [](const ::testing::TestParamInfo<Paged>& info) { return std::string(info.param.kind); });

TEST_P(ClientPagesTest, TakesEveryPageAskingAfterTheLastName) {
  ScriptedPager pager({{"a", "b"}, {"c"}, {"d", "e"}});
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, Call(pager));
  EXPECT_THAT(names, ::testing::ElementsAre("a", "b", "c", "d", "e"));
  EXPECT_THAT(pager.start_afters(), ::testing::ElementsAre("", "b", "c"));
}

// A broker that repeated a page with `more` set would keep the client
// asking forever, and one that went back would list an entry twice. (The
// script ends after its pages, so that a client that believed them
// returns instead of hanging.)
TEST_P(ClientPagesTest, RefusesPagesThatDoNotAdvance) {
  const std::vector<std::vector<ScriptedPager::Page>> hostile = {
      {{"a", "b"}, {"a", "b"}, {"a", "b"}},  // the same page again
      {{"a", "b"}, {"b", "c"}},              // starts at its startAfter
      {{"a", "c"}, {"b"}},                   // goes back
      {{"b", "a"}},                          // out of order within a page
      {{"a", "a"}},                          // a name twice
      {{""}},                                // an empty name, before every name
  };
  for (const auto& pages : hostile) {
    ScriptedPager pager(pages);
    EXPECT_THAT(Call(pager), StatusIs(absl::StatusCode::kInternal, HasSubstr("out of order")))
        << ::testing::PrintToString(pages);
  }
}

TEST_P(ClientPagesTest, RefusesAnEmptyPageWithMoreToCome) {
  ScriptedPager pager({{"a"}, {}, {"b"}});
  EXPECT_THAT(Call(pager), StatusIs(absl::StatusCode::kInternal, HasSubstr("empty page")));
  EXPECT_EQ(pager.start_afters().size(), 2u);
}

// Ever-greater names, page after page: a client that believed them would
// hold whatever a compromised broker chose to send. No policy lists more
// entries than the wire's limit for the kind, nor longer names.
TEST_P(ClientPagesTest, RefusesMoreEntriesOrLongerNamesThanAPolicyHolds) {
  // Pages of 500, which fit in a datagram of either kind: the ninth goes
  // past 4096.
  ASSERT_EQ(GetParam().max_entries, 4096u);
  std::vector<ScriptedPager::Page> pages(12);
  int n = 0;
  for (auto& page : pages) {
    for (int i = 0; i < 500; ++i) page.push_back(absl::StrFormat("e%06d", n++));
  }
  ScriptedPager endless(pages);
  EXPECT_THAT(Call(endless),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr(absl::StrCat(GetParam().max_entries, " entries"))));
  EXPECT_EQ(endless.start_afters().size(), 9u);

  ScriptedPager long_name({{"a", std::string(wire::kMaxNameBytes + 1, 'b')}});
  EXPECT_THAT(Call(long_name), StatusIs(absl::StatusCode::kInternal, HasSubstr("bytes")));
  ScriptedPager longest({{"a", std::string(wire::kMaxNameBytes, 'b')}});
  EXPECT_OK(Call(longest));
}

// An instance removed from the policy comes after the policy's own of the
// same name, and is the next page's startAfter when it ends one.
TEST(ClientServicesTest, ARemovedInstanceFollowsItsNamesake) {
  ScriptedPager pager({{"a", "a*", "b"}, {"c*"}, {"d"}});
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, pager.Services());
  EXPECT_THAT(names, ::testing::ElementsAre("a", "a*", "b", "c*", "d"));
  EXPECT_THAT(pager.start_afters(), ::testing::ElementsAre("", "b", "c*"));

  for (const std::vector<ScriptedPager::Page>& pages :
       std::vector<std::vector<ScriptedPager::Page>>{
           {{"a*", "a"}},        // before its namesake
           {{"a*", "a*"}},       // twice
           {{"a", "a*"}, {"a*"}},  // a page starting at its startAfter
       }) {
    ScriptedPager hostile(pages);
    EXPECT_THAT(hostile.Services(),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("out of order")))
        << ::testing::PrintToString(pages);
  }
}

// A text longer than the broker sends (it cuts them at
// wire::kMaxServiceTextBytes) is not a report.
TEST(ClientServicesTest, RefusesALongerTextThanTheBrokerSends) {
  ScriptedPager longest({{"a"}});
  longest.set_last_exit(std::string(wire::kMaxServiceTextBytes, 'x'));
  EXPECT_OK(longest.Services());
  ScriptedPager longer({{"a"}});
  longer.set_last_exit(std::string(wire::kMaxServiceTextBytes + 1, 'x'));
  EXPECT_THAT(longer.Services(), StatusIs(absl::StatusCode::kInternal,
                                          HasSubstr(absl::StrCat(wire::kMaxServiceTextBytes))));
}

// A broker older than pages ignores listPage and answers `list` whole: that
// answers the first request, and no later one.
TEST_F(ClientTest, AListReplyFromABrokerWithoutPagesIsTheWholeList) {
  broker_->Send([](schema::Reply::Builder r) {
    r.setId(2);
    auto list = r.initList(2);
    list[0].setName("motd");  // policy order, not name order
    list[1].setName("log");
  });
  ASSERT_OK_AND_ASSIGN(std::vector<CapabilityInfo> list, client_->List());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "motd");
  EXPECT_EQ(list[1].name, "log");

  broker_->Send([](schema::Reply::Builder r) {
    r.setId(3);
    auto page = r.initCapabilities();
    page.initEntries(1)[0].setName("a");
    page.setMore(true);
  });
  broker_->Send(ListReply(4));
  EXPECT_THAT(client_->List(), StatusIs(absl::StatusCode::kInternal, HasSubstr("not a page")));
  ExpectClosedAfter("not a page", 4);  // the hello and three lists
}

// The same for `services`: a broker older than pages answers it whole, in
// its own order, with texts as long as it likes (one datagram bounds them).
TEST_F(ClientTest, AServicesReplyFromABrokerWithoutPagesIsTheWholeReport) {
  broker_->Send([](schema::Reply::Builder r) {
    r.setId(2);
    auto services = r.initServices(2);
    services[0].setName("kvstore");
    services[1].setName("journal");
    services[1].setLastExit(std::string(wire::kMaxServiceTextBytes + 100, 'x'));
  });
  ASSERT_OK_AND_ASSIGN(std::vector<ServiceInfo> services, client_->Services());
  ASSERT_EQ(services.size(), 2u);
  EXPECT_EQ(services[0].name, "kvstore");
  EXPECT_EQ(services[1].name, "journal");

  broker_->Send([](schema::Reply::Builder r) {
    r.setId(3);
    auto page = r.initServicePage();
    page.initEntries(1)[0].setName("a");
    page.setMore(true);
  });
  broker_->Send([](schema::Reply::Builder r) {
    r.setId(4);
    r.initServices(1)[0].setName("b");
  });
  EXPECT_THAT(client_->Services(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("not a page")));
  ExpectClosedAfter("not a page", 4);  // the hello and three services
}

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76  // Linux 6.5; Debian 12's headers predate it
#endif

// An inherited connection may have SO_PASSPIDFD on (a systemd socket's
// PassPIDFD=): every datagram would then bring a pidfd of the sender.
TEST(ClientFromFdTest, AConnectionPassingPidfdsLeavesNoFdsBehind) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  const int on = 1;
  if (setsockopt(pair.second.get(), SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on)) != 0) {
    ASSERT_EQ(errno, ENOPROTOOPT) << std::strerror(errno);
    GTEST_SKIP() << "this kernel has no SO_PASSPIDFD (Linux 6.5): no pidfds to leak";
  }
  const int before = CountOpenFds();
  {
    BrokerEnd broker(std::move(pair.first));
    broker.Send(HelloReply);
    for (uint64_t id = 2; id < 12; ++id) broker.Send(ListReply(id));
    ASSERT_OK_AND_ASSIGN(Client client, Client::FromFd(std::move(pair.second)));
    for (int i = 0; i < 10; ++i) ASSERT_OK(client.List());
  }
  EXPECT_EQ(CountOpenFds(), before - 2) << "fds left: "
                                        << ::testing::PrintToString(testing::OpenFdTargets());
}

// A Client's deadline. A call that the old code left hanging must not hang
// the test: those run in a forked child, which SIGALRM's default action
// ends after kSafetySeconds, a liveness bound that measures no speed.
constexpr unsigned kSafetySeconds = 30;
constexpr absl::Duration kTimeout = absl::Milliseconds(100);

// What `body` returned in a child, or how the child ended.
std::string Bounded(const std::function<std::string()>& body) {
  testing::ChildResult child = testing::RunInChild([&] {
    alarm(kSafetySeconds);
    return body();
  });
  if (WIFSIGNALED(child.wait_status)) {
    const int signal = WTERMSIG(child.wait_status);
    return absl::StrCat("the child was killed by signal ", signal,
                        signal == SIGALRM ? ": it hung past the safety deadline" : "");
  }
  return child.output;
}

// `status` on one line, for a child to report: "CODE: message".
std::string Line(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

// A listening SOCK_SEQPACKET socket at `path` that never accepts, as a
// broker whose only thread is stuck (on a hung FUSE or NFS file) leaves
// its socket: the kernel completes `backlog` connections, then makes
// connect(2) wait.
absl::StatusOr<UniqueFd> ListenWithoutAccepting(const std::string& path, int backlog) {
  CB_ASSIGN_OR_RETURN(wire::UnixAddress address, wire::MakeUnixAddress(path));
  CB_ASSIGN_OR_RETURN(UniqueFd listener,
                      TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "socket"));
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.addr), address.length) !=
          0 ||
      listen(listener.get(), backlog) != 0) {
    return ErrnoStatus(errno, "bind or listen");
  }
  return listener;
}

const char kNoAnswer[] = "DEADLINE_EXCEEDED: the broker did not answer within 100ms";

// Something that takes the hello and never answers (a stalled broker, or
// another program at the socket's path): the timeout ends the wait.
TEST(ClientTimeoutTest, FromFdGivesUpOnAHelloNeverAnswered) {
  EXPECT_EQ(Bounded([] {
              absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
              if (!pair.ok()) return Line(pair.status());
              return Line(Client::FromFd(std::move(pair->second), {.timeout = kTimeout}).status());
            }),
            kNoAnswer);
}

TEST(ClientTimeoutTest, ConnectGivesUpOnABrokerThatNeverAnswers) {
  testing::TempDir dir;
  const std::string path = dir.Join("broker.sock");
  EXPECT_EQ(Bounded([&] {
              absl::StatusOr<UniqueFd> listener = ListenWithoutAccepting(path, 8);
              if (!listener.ok()) return Line(listener.status());
              return Line(Client::Connect(path, {.timeout = kTimeout}).status());
            }),
            kNoAnswer);
}

// A broker stuck for long has a full listen queue: connect(2) itself waits.
TEST(ClientTimeoutTest, ConnectGivesUpOnAFullListenQueue) {
  testing::TempDir dir;
  const std::string path = dir.Join("broker.sock");
  const std::string outcome = Bounded([&] {
    // Backlog 0: the first connection fills the queue.
    absl::StatusOr<UniqueFd> listener = ListenWithoutAccepting(path, 0);
    if (!listener.ok()) return Line(listener.status());
    absl::StatusOr<UniqueFd> first = wire::ConnectSeqpacket(path);
    if (!first.ok()) return Line(first.status());
    return Line(Client::Connect(path, {.timeout = kTimeout}).status());
  });
  EXPECT_THAT(outcome, AllOf(StartsWith("DEADLINE_EXCEEDED: "),
                             HasSubstr("did not accept the connection within 100ms"),
                             HasSubstr("listen queue is full")));
}

// Every call has the whole timeout, from when it is sent. One past it
// closes the connection: the late reply would be read as the next call's.
TEST(ClientTimeoutTest, ACallPastItsDeadlineClosesTheConnection) {
  EXPECT_EQ(Bounded([] {
              absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
              if (!pair.ok()) return Line(pair.status());
              BrokerEnd broker(std::move(pair->first));
              broker.Send(HelloReply);
              broker.Send(ListReply(2));
              absl::StatusOr<Client> client =
                  Client::FromFd(std::move(pair->second), {.timeout = kTimeout});
              if (!client.ok()) return Line(client.status());
              std::string outcome = Line(client->List().status());  // answered
              absl::StrAppend(&outcome, "\n", Line(client->List().status()));
              broker.Send(ListReply(3));  // too late
              absl::StrAppend(&outcome, "\n", Line(client->List().status()), "\nfd ",
                              client->fd());
              return outcome;
            }),
            absl::StrCat("OK: \n", kNoAnswer,
                         "\nUNAVAILABLE: the connection to the broker was closed after an "
                         "earlier error: DEADLINE_EXCEEDED: the broker did not answer within "
                         "100ms\nfd -1"));
}

// A signal (a handler without SA_RESTART) interrupts the wait: it goes on
// for the time left, not for the whole timeout again, which a signal
// every 5 ms would renew for ever.
TEST(ClientTimeoutTest, SignalsDoNotRenewTheTimeout) {
  EXPECT_EQ(Bounded([] {
              struct sigaction action = {};
              action.sa_handler = [](int) {};
              if (sigaction(SIGUSR1, &action, nullptr) != 0) return std::string("sigaction");
              sigevent event = {};
              event.sigev_notify = SIGEV_SIGNAL;
              event.sigev_signo = SIGUSR1;
              timer_t timer;
              if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) {
                return std::string("timer_create");
              }
              const itimerspec every_5ms = {{0, 5'000'000}, {0, 5'000'000}};
              if (timer_settime(timer, 0, &every_5ms, nullptr) != 0) {
                return std::string("timer_settime");
              }
              absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
              if (!pair.ok()) return Line(pair.status());
              return Line(Client::FromFd(std::move(pair->second), {.timeout = kTimeout}).status());
            }),
            kNoAnswer);
}

// An unasked message (id 0, a kind that answers nothing), flattened.
std::vector<uint8_t> UnaskedReady() {
  capnp::MallocMessageBuilder message;
  auto ready = message.initRoot<schema::Reply>();
  ready.setId(0);
  ready.setReady();
  absl::StatusOr<kj::Array<capnp::word>> words = wire::Flatten(message);
  EXPECT_OK(words);
  if (!words.ok()) return {};
  const kj::ArrayPtr<const kj::byte> bytes = words->asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// Sends `datagram` on `fd` without waiting until the socket is full;
// returns how many went, or -1 when a send failed otherwise.
int FillSocket(int fd, absl::Span<const uint8_t> datagram) {
  int sent = 0;
  int error = 0;
  while ((error = testing::RawSend(fd, datagram, {}, MSG_DONTWAIT)) == 0) ++sent;
  return error == EAGAIN ? sent : -1;
}

// Past the deadline a call reads what was queued when it passed, and no
// more: a peer that keeps unasked messages coming cannot hold it. Here the
// deadline (1 ns) has passed by the first message read, the rest are read,
// and the call ends without waiting for more.
TEST(ClientTimeoutTest, PastTheDeadlineUnaskedMessagesEndTheCall) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  BrokerEnd broker(std::move(pair.first));
  broker.Send(HelloReply);
  ASSERT_OK_AND_ASSIGN(Client client,
                       Client::FromFd(std::move(pair.second), {.timeout = absl::Nanoseconds(1)}));
  const std::vector<uint8_t> unasked = UnaskedReady();
  ASSERT_GT(FillSocket(broker.fd(), unasked), 1);
  EXPECT_THAT(client.Status(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                        "the broker did not answer within 1ns"));
  EXPECT_EQ(client.fd(), -1);
}

// A reply queued when the deadline passed is taken, even behind other
// messages (a connection for a service): it came in time.
TEST(ClientTimeoutTest, PastTheDeadlineAReplyQueuedBehindAnEventIsTaken) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  BrokerEnd broker(std::move(pair.first));
  broker.Send(HelloReply);
  ASSERT_OK_AND_ASSIGN(Client client,
                       Client::FromFd(std::move(pair.second), {.timeout = absl::Nanoseconds(1)}));
  SayReady(broker, client, 2);
  ASSERT_OK_AND_ASSIGN(UniqueFd null, TakeFd(open("/dev/null", O_RDONLY | O_CLOEXEC), "open"));
  broker.Send(IncomingEvent("alice"), {null.get()});
  broker.Send(ListReply(3));
  EXPECT_OK(client.List());
  EXPECT_EQ(client.queued_incoming(), 1u);
  EXPECT_GE(client.fd(), 0);
}

// A peer that answers without reading the requests (no broker does) fills
// the client's send buffer: a request waits for room within the timeout,
// and one that does not fit is not sent, which leaves the connection in
// step.
TEST(ClientTimeoutTest, ARequestThereIsNoRoomForIsNotSent) {
  const std::string outcome = Bounded([] {
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
    if (!pair.ok()) return Line(pair.status());
    BrokerEnd broker(std::move(pair->first));
    broker.Send(HelloReply);
    constexpr uint64_t kReplies = 40;
    for (uint64_t id = 2; id < 2 + kReplies; ++id) broker.Send(ListReply(id));
    absl::StatusOr<Client> client =
        Client::FromFd(std::move(pair->second), {.timeout = kTimeout});
    if (!client.ok()) return Line(client.status());
    // The smallest send buffer the kernel allows (about 4.5 KiB).
    const int one = 1;
    if (setsockopt(client->fd(), SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) != 0) {
      return std::string("setsockopt(SO_SNDBUF)");
    }
    absl::Status listed;
    uint64_t answered = 0;
    while (answered < kReplies && (listed = client->List().status()).ok()) ++answered;
    std::string result = Line(listed);
    // The broker reads now: the hello and the requests answered, not the
    // one there was no room for; the next is answered as the next id.
    const int sent = broker.RequestsWaiting();
    if (sent != static_cast<int>(answered) + 1) {
      absl::StrAppend(&result, "\n", sent, " requests sent, ", answered + 1, " expected");
    }
    absl::StrAppend(&result, "\nthen ", Line(client->List().status()));
    return result;
  });
  EXPECT_EQ(outcome,
            "DEADLINE_EXCEEDED: the broker did not take the request within 100ms (it is not "
            "reading)\nthen OK: ");
}

// A receive that fails in this process (recvmsg's ENOMEM: memory pressure
// here) is not the broker's doing: the error keeps its code and says what
// failed, with no "broken broker reply" (whose code, kResourceExhausted for
// a datagram too large, it shares), and the connection closes all the same.
TEST_F(ClientTest, AReceiveFailingHereIsNoBrokenBrokerReply) {
  const int fd = client_->fd();
  EXPECT_EQ(testing::ExitCodeInChild([&] {
              const testing::SyscallFilter failing_receive(
                  SYS_recvmsg, 0, static_cast<uint32_t>(fd), SECCOMP_RET_ERRNO | ENOMEM);
              if (failing_receive.Install(false) != 0) return 1;
              const absl::Status listed = client_->List().status();
              if (listed.code() != absl::StatusCode::kResourceExhausted) return 2;
              if (absl::StrContains(listed.message(), "broken broker reply")) return 3;
              if (!absl::StrContains(listed.message(), "recvmsg") ||
                  !absl::StrContains(listed.message(), "Cannot allocate memory")) {
                return 4;
              }
              return client_->fd() == -1 ? 0 : 5;
            }),
            0);
}

// A bound the caller set on the socket itself (SO_RCVTIMEO) ends the wait
// alike: kDeadlineExceeded, not a hang-up (the broker closed nothing), and
// the connection is closed as for the client's own timeout.
TEST(ClientTimeoutTest, AReceiveTimeoutOnTheSocketIsNoHangUp) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  BrokerEnd broker(std::move(pair.first));
  const timeval ten_ms{0, 10 * 1000};
  ASSERT_EQ(setsockopt(pair.second.get(), SOL_SOCKET, SO_RCVTIMEO, &ten_ms, sizeof(ten_ms)), 0);
  EXPECT_THAT(Client::FromFd(std::move(pair.second)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("the broker did not answer"), HasSubstr("SO_RCVTIMEO"),
                             Not(HasSubstr("closed")), Not(HasSubstr("non-blocking")))));
}

TEST(ClientTimeoutTest, ATimeoutMustBePositive) {
  for (absl::Duration timeout : {absl::ZeroDuration(), absl::Milliseconds(-1)}) {
    ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
    EXPECT_THAT(Client::FromFd(std::move(pair.second), {.timeout = timeout}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
    EXPECT_THAT(Client::Connect("/nonexistent/broker.sock", {.timeout = timeout}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
  }
}

TEST(ClientFromFdTest, MakesTheConnectionCloseOnExecAndBlocking) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  BrokerEnd broker(std::move(pair.first));
  broker.Send(HelloReply);
  // As a parent may pass it: inheritable (dup2 clears FD_CLOEXEC) and
  // non-blocking.
  ASSERT_EQ(fcntl(pair.second.get(), F_SETFD, 0), 0);
  ASSERT_OK(SetNonBlocking(pair.second.get(), true));
  ASSERT_OK_AND_ASSIGN(Client client, Client::FromFd(std::move(pair.second)));
  EXPECT_TRUE(testing::IsCloseOnExec(client.fd()));
  const int flags = fcntl(client.fd(), F_GETFL);
  ASSERT_GE(flags, 0);
  EXPECT_EQ(flags & O_NONBLOCK, 0);
}

}  // namespace
}  // namespace capbroker

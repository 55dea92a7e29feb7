#include "sdk/service/service.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "capnp/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/channel.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/child_exit.h"

namespace capbroker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::ElementsAre;

TEST(ParseServiceLayoutTest, ReadsGrantsAndBrokerFd) {
  ASSERT_OK_AND_ASSIGN(ServiceLayout layout,
                       ParseServiceLayout("2", "1", "db:data", "5", 1));
  EXPECT_THAT(layout.grants, ElementsAre(Pair("db", 3), Pair("data", 4)));
  EXPECT_EQ(layout.broker_fd, 5);
}

TEST(ParseServiceLayoutTest, NoGrants) {
  ASSERT_OK_AND_ASSIGN(ServiceLayout layout,
                       ParseServiceLayout(nullptr, nullptr, nullptr, "3", 77));
  EXPECT_TRUE(layout.grants.empty());
  EXPECT_EQ(layout.broker_fd, 3);
}

TEST(ParseServiceLayoutTest, HostileValuesAreRefusedWithTheirName) {
  auto error = [](const char* fds, const char* pid, const char* names, const char* broker) {
    return ParseServiceLayout(fds, pid, names, broker, 1).status();
  };
  EXPECT_THAT(error(nullptr, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD is not set")));
  EXPECT_THAT(error("x", "1", "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "LISTEN_FDS wants a decimal number from 0 to 1024 (digits only, no "
                       "leading 0), not 'x'"));
  EXPECT_THAT(error("-1", "1", "a", "4"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   HasSubstr("LISTEN_FDS wants")));
  EXPECT_THAT(error("99999", "1", "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LISTEN_FDS")));
  EXPECT_THAT(error("1", nullptr, "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LISTEN_PID is not")));
  EXPECT_THAT(error("1", "2", "a", "4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("another process's")));
  EXPECT_THAT(error("2", "1", "a", "5"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names 1 fds")));
  // The broker fd cannot sit on a grant, nor on stdio.
  EXPECT_THAT(error("1", "1", "a", "3"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "CAPBROKER_FD wants a decimal number from 4 to 2147483647, not '3'"));
  EXPECT_THAT(error(nullptr, nullptr, nullptr, "1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD")));
  EXPECT_THAT(error(nullptr, nullptr, nullptr, "3junk"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CAPBROKER_FD")));
}

// The broker writes each number in digits alone: what SimpleAtoi also took
// around a number in range (blanks, a sign, a leading 0) is refused, naming
// the variable and showing the value escaped.
TEST(ParseServiceLayoutTest, ANumberIsDigitsAlone) {
  for (const char* form : {" 1", "1 ", "+1", "01", "1\n"}) {
    SCOPED_TRACE(form);
    auto refused = [&](absl::string_view name) {
      return StatusIs(absl::StatusCode::kInvalidArgument,
                      AllOf(HasSubstr(absl::StrCat(name, " wants a decimal number")),
                            HasSubstr("digits only"), Not(HasSubstr("\n"))));
    };
    EXPECT_THAT(ParseServiceLayout(form, "1", "a", "4", 1), refused("LISTEN_FDS"));
    EXPECT_THAT(ParseServiceLayout("1", form, "a", "4", 1), refused("LISTEN_PID"));
    const std::string broker_fd = absl::StrReplaceAll(form, {{"1", "4"}});
    EXPECT_THAT(ParseServiceLayout("1", "1", "a", broker_fd.c_str(), 1),
                refused("CAPBROKER_FD"));
  }
}

// Writes the broker's reply `id` of kind `fill` on `broker`.
template <typename Fill>
void Reply(wire::Channel& broker, uint64_t id, Fill fill) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(id);
  fill(reply);
  ASSERT_OK(broker.Send(message));
}

// A Service with no grants on a connection whose other end is `broker`, as
// the broker starts one; the hello is answered before it is asked.
absl::StatusOr<Service> ServiceWithBroker(wire::Channel& broker, UniqueFd end) {
  Reply(broker, 1, [](schema::Reply::Builder r) {
    r.initHello().setVersion(schema::PROTOCOL_VERSION);
  });
  const std::string fd = absl::StrCat(end.release());
  if (setenv("CAPBROKER_FD", fd.c_str(), 1) != 0) return absl::InternalError("setenv");
  return Service::FromEnvironment();
}

void ExpectMovedFrom(Service& moved_from) {
  auto moved = StatusIs(absl::StatusCode::kUnavailable, std::string("this Service was moved from"));
  EXPECT_THAT(moved_from.Accept(), moved);
  EXPECT_THAT(moved_from.Ready(), moved);
  EXPECT_THAT(moved_from.TakeGrant("db"), moved);
  EXPECT_EQ(moved_from.broker().fd(), -1);
}

// A Service left behind by a move says so on every call; the one moved to
// has the connection.
TEST(ServiceTest, AServiceMovedFromSaysSo) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  wire::Channel broker(std::move(pair.first));
  ASSERT_OK_AND_ASSIGN(Service service, ServiceWithBroker(broker, std::move(pair.second)));
  Service constructed(std::move(service));
  ExpectMovedFrom(service);

  ASSERT_OK_AND_ASSIGN(auto other_pair, wire::SeqpacketPair());
  wire::Channel other_broker(std::move(other_pair.first));
  ASSERT_OK_AND_ASSIGN(Service assigned,
                       ServiceWithBroker(other_broker, std::move(other_pair.second)));
  assigned = std::move(constructed);
  ExpectMovedFrom(constructed);

  Reply(broker, 2, [](schema::Reply::Builder r) { r.setReady(); });
  EXPECT_OK(assigned.Ready());
}

// The name asked for may come from the service's command (--grant=NAME)
// and hold anything: the refusal shows it escaped.
TEST(ServiceTest, AGrantNotHeldIsNamedEscaped) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  wire::Channel broker(std::move(pair.first));
  ASSERT_OK_AND_ASSIGN(Service service, ServiceWithBroker(broker, std::move(pair.second)));
  EXPECT_THAT(service.TakeGrant("db\nforged\x1b[31m"),
              StatusIs(absl::StatusCode::kNotFound,
                       "no grant named 'db\\x0aforged\\x1b[31m'; this service holds: (none)"));
}

// A service's processes are all of one uid (a forked worker, another
// instance): were it dumpable, any of them compromised could open its
// /proc/PID/mem and read what it holds.
TEST(ServiceTest, AServiceIsNotDumpable) {
  ASSERT_EQ(prctl(PR_SET_DUMPABLE, 1), 0);  // as after execve
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  wire::Channel broker(std::move(pair.first));
  ASSERT_OK_AND_ASSIGN(Service service, ServiceWithBroker(broker, std::move(pair.second)));
  EXPECT_EQ(prctl(PR_GET_DUMPABLE), 0);
}

// A service inherits the broker's RLIMIT_FSIZE. A write past it must fail
// (EFBIG) for the request that made it, not kill the service for every
// client with SIGXFSZ, whose default action ends the process.
TEST(ServiceTest, AServiceIgnoresSigxfsz) {
  ASSERT_NE(signal(SIGXFSZ, SIG_DFL), SIG_ERR);  // as the broker leaves it
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  wire::Channel broker(std::move(pair.first));
  ASSERT_OK_AND_ASSIGN(Service service, ServiceWithBroker(broker, std::move(pair.second)));
  struct sigaction now {};
  ASSERT_EQ(sigaction(SIGXFSZ, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_IGN);
}

// The fds the broker passes are inherited without close-on-exec, and the
// variables that announce them would mislead a program the service runs:
// FromEnvironment makes every fd close-on-exec and removes the variables.
// In a child, whose fds 3 and 4 are the test's to take.
TEST(ServiceTest, FromEnvironmentMakesTheFdsCloseOnExecAndRemovesTheVariables) {
  EXPECT_EQ(testing::ExitCodeInChild([] {
              // Fds 3 and 4 taken first, so that nothing made below lands there.
              const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
              if (null < 0 || dup2(null, 3) < 0 || dup2(null, 4) < 0) {
                return 9;
              }
              absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
              int p[2];
              if (!pair.ok() || pipe(p) != 0) return 10;
              wire::Channel broker(std::move(pair->first));
              capnp::MallocMessageBuilder hello;
              auto reply = hello.initRoot<schema::Reply>();
              reply.setId(1);
              reply.initHello().setVersion(schema::PROTOCOL_VERSION);
              if (!broker.Send(hello).ok()) return 11;
              // dup2 leaves the copy without close-on-exec, as exec leaves them.
              if (dup2(p[0], 3) != 3 || dup2(pair->second.get(), 4) != 4) return 12;
              const std::string pid = absl::StrCat(getpid());
              if (setenv("LISTEN_FDS", "1", 1) != 0 || setenv("LISTEN_PID", pid.c_str(), 1) != 0 ||
                  setenv("LISTEN_FDNAMES", "db", 1) != 0 || setenv("CAPBROKER_FD", "4", 1) != 0) {
                return 13;
              }
              absl::StatusOr<Service> service = Service::FromEnvironment();
              if (!service.ok()) return 14;
              if (fcntl(3, F_GETFD) != FD_CLOEXEC) return 15;  // the grant
              if (fcntl(4, F_GETFD) != FD_CLOEXEC) return 16;  // the broker connection
              for (const char* name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "CAPBROKER_FD"}) {
                if (getenv(name) != nullptr) return 17;
              }
              return 0;
            }),
            0);
}

}  // namespace
}  // namespace capbroker

// CallService against a fake service in this process: replies with fds,
// errors, garbage, and none at all.
#include "sdk/service/call_service.h"

#include <fcntl.h>

#include <thread>
#include <vector>

#include "capnp/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/service/call_service_test.capnp.h"
#include "sdk/wire/channel.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/raw_send.h"

namespace capbroker {
namespace {

using call_service_test::Reply;
using call_service_test::Request;
using ::testing::HasSubstr;

// The service's end and the client's, the client's taking no fds.
class CallServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
    service_.emplace(std::move(pair.first));
    client_.emplace(std::move(pair.second), wire::FdPolicy::kRefuse);
  }

  // One call on `channel` (the client's by default), its reply read as OK.
  absl::Status Call(absl::Duration timeout = absl::InfiniteDuration()) {
    return CallOn(*client_, timeout);
  }
  static absl::Status CallOn(wire::Channel& channel, absl::Duration timeout) {
    capnp::MallocMessageBuilder request;
    request.initRoot<Request>().setText("hello");
    return CallService<Reply>(
        channel, request, {}, [](Reply::Reader) { return absl::OkStatus(); }, timeout);
  }

  // Sends the service's reply, `done` or an error, with `fds` (borrowed).
  absl::Status Answer(const absl::Status& status, const std::vector<int>& fds = {}) {
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<Reply>();
    if (status.ok()) {
      reply.setDone();
    } else {
      SetError(reply.initError(), status);
    }
    return service_->Send(message, fds);
  }

  std::optional<wire::Channel> service_;
  std::optional<wire::Channel> client_;
};

TEST_F(CallServiceTest, AReplyIsRead) {
  ASSERT_OK(Answer(absl::OkStatus()));
  EXPECT_OK(Call());
}

TEST_F(CallServiceTest, AnErrorReplyIsItsStatus) {
  ASSERT_OK(Answer(absl::NotFoundError("no such key")));
  EXPECT_THAT(Call(), StatusIs(absl::StatusCode::kNotFound, "no such key"));
  ASSERT_OK(Answer(absl::OkStatus()));  // in step: the next call gets its own
  EXPECT_OK(Call());
}

// A hostile service attaches an fd to its reply. The client's socket
// refuses it when the service sends (EPERM), so that no file of the
// service's is ever installed or released here; where the kernel cannot
// refuse, it is discarded unopened and the reply refused.
TEST_F(CallServiceTest, FdsOnAReplyNeverReachTheClient) {
  const int fds_before = testing::CountOpenFds();
  absl::Status with_fd;
  std::thread service([&] {
    ASSERT_OK(service_->Receive());
    UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(null.valid());
    with_fd = Answer(absl::OkStatus(), {null.get()});
    // Answers plainly once refused, so that the call ends either way.
    if (!with_fd.ok()) {
      EXPECT_OK(Answer(absl::OkStatus()));
    }
  });
  const absl::Status called = Call(absl::Seconds(10));
  service.join();
  if (testing::KernelCanRefuseFds()) {
    EXPECT_THAT(with_fd, StatusIs(absl::StatusCode::kPermissionDenied));
    EXPECT_OK(called);
  } else {
    EXPECT_THAT(called, StatusIs(absl::StatusCode::kInternal,
                                 HasSubstr("sent fds with its reply (discarded unopened)")));
  }
  EXPECT_EQ(testing::CountOpenFds(), fds_before);
}

TEST_F(CallServiceTest, GarbageIsAnError) {
  ASSERT_EQ(testing::RawSend(service_->fd(), std::vector<uint8_t>{99, 0, 0, 0, 1, 0, 0, 0}), 0);
  EXPECT_THAT(Call(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("segments")));
  // One segment of one word: a root pointer far out of it.
  std::vector<uint8_t> bytes(16, 0xff);
  std::fill(bytes.begin(), bytes.begin() + 8, 0);
  bytes[4] = 1;
  ASSERT_EQ(testing::RawSend(service_->fd(), bytes), 0);
  EXPECT_THAT(Call(), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("malformed service reply")));
}

// A service that never answers: the call gives up at its timeout, and
// closes the connection, since a late answer would be read as the next
// request's.
TEST_F(CallServiceTest, AServiceThatNeverAnswersIsDeadlineExceeded) {
  EXPECT_THAT(Call(absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       "the service did not answer within 50ms; the connection is closed"));
  EXPECT_EQ(client_->fd(), -1);
  // The next call on the closed channel says the connection is gone.
  EXPECT_THAT(Call(), StatusIs(absl::StatusCode::kUnavailable,
                               "the connection to the service was closed after an earlier "
                               "error; open a new one"));
}

TEST_F(CallServiceTest, ATimeoutMustBePositive) {
  EXPECT_THAT(Call(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be positive")));
}

// A channel that would install fds is refused before anything is sent.
TEST_F(CallServiceTest, AChannelThatTakesFdsIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  wire::Channel service(std::move(pair.first));
  wire::Channel taking(std::move(pair.second));
  EXPECT_THAT(CallOn(taking, absl::InfiniteDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("FdPolicy::kRefuse")));
  ASSERT_OK(SetNonBlocking(service.fd(), true));
  EXPECT_THAT(service.Receive(), StatusIs(absl::StatusCode::kUnavailable));  // nothing sent
}

}  // namespace
}  // namespace capbroker

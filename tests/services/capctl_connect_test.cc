// `capctl connect` against a real capbrokerd hosting a service: what it
// says when the command cannot be run once the service's connection is in
// hand.
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "sdk/capctl/capctl.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/service_binary.h"
#include "tests/fixtures/syscall_filter.h"

namespace capbroker {
namespace {

constexpr char kPolicy[] = R"(( principals = [ ( name = "me", match = ( uid = $UID ) ) ],
  services = [ ( name = "echo", command = [ "$SVC", "echo" ], connect = [ "me" ] ) ] ))";

// The exec steps that connect shares with exec fail in connect's name:
// "capctl: connect: ...", not "capctl: exec: ...", which would name the
// other command. close_range(CLOSE_RANGE_CLOEXEC), which only those steps
// call, fails here by a seccomp filter.
TEST(CapctlConnectTest, AFailureBeforeTheCommandRunsIsInConnectsName) {
  testing::ServiceBinary binary("tests/services/test_service");
  ASSERT_FALSE(binary.path().empty());
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<testing::BrokerProcess> broker,
      testing::BrokerProcess::Start(absl::StrReplaceAll(kPolicy, {{"$SVC", binary.path()}})));
  const testing::SyscallFilter filter(__NR_close_range, 2, CLOSE_RANGE_CLOEXEC,
                                      SECCOMP_RET_ERRNO | EPERM);
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd read_end(pipefd[0]);
  UniqueFd write_end(pipefd[1]);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (filter.Install(false) != 0) _exit(90);
    std::ostringstream out, err;
    int code = RunCapctl(
        {"--socket", broker->socket_path(), "connect", "echo", "--", "/bin/true"}, out, err);
    std::string all = out.str() + err.str();
    (void)!write(write_end.get(), all.data(), all.size());
    _exit(code);
  }
  write_end.reset();
  std::string output;
  char buf[4096];
  for (ssize_t n; (n = read(read_end.get(), buf, sizeof buf)) > 0;) output.append(buf, n);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), kExitCannotExec) << output;
  EXPECT_EQ(output, "capctl: connect: close_range(4, ~0, CLOSE_RANGE_CLOEXEC): Operation not "
            "permitted\n");
}

}  // namespace
}  // namespace capbroker

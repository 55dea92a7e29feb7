// Mutation fuzzing over a real connection: 2,000 pseudo-random mutations
// (fixed seed) of valid requests. The broker must answer each one or hang
// up, keep serving a good client, and leak no fds.
#include <random>
#include <vector>

#include "capnp/message.h"
#include "gtest/gtest.h"
#include "tests/fixtures/mutate.h"
#include "tests/hostile/hostile_fixture.h"

namespace capbroker::hostile {
namespace {

using ::capbroker::testing::Mutate;

constexpr int kMutations = 2000;
constexpr uint32_t kSeed = 20220623;

std::vector<std::vector<uint8_t>> Seeds() {
  std::vector<std::vector<uint8_t>> seeds;
  seeds.push_back(HelloBytes(21, schema::PROTOCOL_VERSION));
  seeds.push_back(AcquireBytes(22, "motd"));
  seeds.push_back(StatusBytes(23));
  capnp::MallocMessageBuilder open;
  auto request = open.initRoot<schema::Request>();
  request.setId(24);
  auto beneath = request.initOpenBeneath();
  beneath.setDirectory("motd");
  beneath.setPath("a/b/c");
  beneath.setCreate(true);
  seeds.push_back(Encode(open));
  capnp::MallocMessageBuilder list;
  list.initRoot<schema::Request>().setId(25);
  list.getRoot<schema::Request>().setList();
  seeds.push_back(Encode(list));
  return seeds;
}

TEST_F(HostileTest, MutatedRequestsNeverHurtTheBroker) {
  std::mt19937 rng(kSeed);
  std::vector<std::vector<uint8_t>> seeds = Seeds();
  UniqueFd conn = ConnectAndHello();
  int replies = 0, hang_ups = 0;
  for (int i = 0; i < kMutations; ++i) {
    std::vector<uint8_t> bytes = Mutate(seeds[rng() % seeds.size()], rng);
    int error = Send(conn.get(), bytes);
    RawReply reply;
    if (error == 0) reply = Receive(conn.get());
    ASSERT_FALSE(reply.timed_out) << "mutation " << i;
    ASSERT_FALSE(HasFailure()) << "the broker failed at mutation " << i;
    if (error != 0 || reply.hung_up) {
      ++hang_ups;
      conn = ConnectAndHello();
      ASSERT_FALSE(HasFailure()) << "the broker is gone after mutation " << i;
      continue;
    }
    ++replies;
    // Now and then, start afresh on a new connection.
    if (rng() % 8 == 0) conn = ConnectAndHello();
  }
  EXPECT_GT(replies, kMutations / 2);
  conn.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
  RecordProperty("replies", replies);
  RecordProperty("hang_ups", hang_ups);
}

}  // namespace
}  // namespace capbroker::hostile

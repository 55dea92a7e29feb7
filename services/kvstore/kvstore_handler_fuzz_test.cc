// Runs the kvstore's fuzz entry point (kvstore_handler_fuzz.cc) over
// request sequences written here, well-formed and hostile, and seeded
// mutations of them, so that it runs in `make test`. The entry point
// aborts on a broken invariant.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "capnp/message.h"
#include "gtest/gtest.h"
#include "sdk/service/data_view.h"
#include "services/kvstore/kvstore.capnp.h"
#include "tests/fixtures/fuzz_datagrams.h"
#include "tests/fixtures/fuzz_corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker::kvstore {
namespace {

using Fill = std::function<void(schema::Request::Builder)>;

Fill Put(std::string key, std::string value) {
  return [=](schema::Request::Builder r) {
    auto put = r.initPut();
    put.setKey(AsData(key));
    put.setValue(AsData(value));
  };
}

Fill Get(std::string key) {
  return [=](schema::Request::Builder r) { r.setGet(AsData(key)); };
}

Fill Delete(std::string key) {
  return [=](schema::Request::Builder r) { r.setDelete(AsData(key)); };
}

Fill List(std::string start_after) {
  return [=](schema::Request::Builder r) { r.initList().setStartAfter(AsData(start_after)); };
}

// One connection's requests, each with `fds` fds.
std::vector<uint8_t> Requests(const std::vector<Fill>& fills, size_t fds = 0) {
  std::vector<uint8_t> input;
  for (const Fill& fill : fills) {
    capnp::MallocMessageBuilder message;
    fill(message.initRoot<schema::Request>());
    testing::AppendMessage(input, message, fds);
  }
  return input;
}

std::vector<uint8_t> Raw(const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> input;
  testing::AppendDatagram(input, bytes);
  return input;
}

std::vector<std::vector<uint8_t>> Corpus() {
  const std::string longest(120, '\xff');
  return {
      Requests({Put("k", "v"), Get("k"), List(""), Delete("k"), Get("k"), Delete("k")}),
      Requests({List(""), List("\x01"), List(std::string(60, '\x30')), List(longest)}),
      Requests({Put("", "v"), Put(std::string(121, 'k'), "v"), Put("k", std::string(40000, 'v')),
                Get(""), Get(longest + "x"), Delete(""), List(longest + longest)}),
      Requests({Put(longest, std::string(32768, 'v')), Get(longest), Delete(longest)}),
      Requests({Get("k")}, 1),
      Requests({Get("k")}, testing::kMaxFdsPerRecord),
      // A request of a union member this version lacks (9), then datagrams
      // that are not messages, or point past their end.
      Raw({0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0,
           0, 0, 0, 0, 0, 0, 0, 0}),
      Raw({}),
      Raw({0, 0, 0, 0, 0, 0, 0, 0}),
      Raw({1, 0, 0}),
      Raw({0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}),
      Raw({0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0}),
  };
}

TEST(KvstoreHandlerFuzzTest, WrittenInputs) {
  testing::RunWrittenCorpus(LLVMFuzzerTestOneInput, "kvstore", Corpus());
}

TEST(KvstoreHandlerFuzzTest, MutatedInputs) {
  testing::RunMutatedCorpus(LLVMFuzzerTestOneInput, Corpus(), 100, 20240915);
}

}  // namespace
}  // namespace capbroker::kvstore

// The raw baseline the benchmarks compare with: a SEQPACKET exchange of a
// 32-byte request and a 64-byte reply carrying one fd, without a broker.
#ifndef CAPBROKER_TESTS_BENCH_RAW_EXCHANGE_H_
#define CAPBROKER_TESTS_BENCH_RAW_EXCHANGE_H_

#include <string>

#include "sdk/wire/datagram.h"

namespace capbroker::bench {

inline constexpr size_t kRequestBytes = 32;
inline constexpr size_t kReplyBytes = 64;

// Prints "<program>: <what>" and exits 2.
[[noreturn]] void Die(const std::string& what);

// A 4 KiB memfd: what the raw servers hand out, like the broker's "board".
int MakeGrantFd();

// The client's half of one exchange: send the request, receive the reply
// and its one fd, close the fd. False on any failure.
bool RawExchange(int fd, wire::ReceiveBuffer& buffer);

// The server's half: send the reply with `grant_fd` (borrowed).
bool RawReply(int fd, int grant_fd);

// A blocking server for one peer on `fd`, until the peer hangs up; exits.
// Each reply carries `grant_fd`, or, when it is -1, one end of a new
// socketpair (what handing out a connection costs the kernel).
[[noreturn]] void ServePair(int fd, int grant_fd);

}  // namespace capbroker::bench

#endif  // CAPBROKER_TESTS_BENCH_RAW_EXCHANGE_H_

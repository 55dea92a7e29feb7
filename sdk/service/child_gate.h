// ChildGate: how a child of a ForkingServer's main process (a worker or a
// closer) starts. It sheds the fds it inherited before the main process
// goes on, and a worker reads nothing of its client's before the main
// process has closed its copy of the connection.
//
// Why. fork copies the fd table: a child holds, until it closes them, a
// copy of every fd the main process holds: the broker connection, the
// refused connections that wait for a closer (parked), the connections the
// Client has queued for workers not started yet, the closer's socket. A
// copy is a reference: while the child holds one, the main process's close
// of that connection is not the last, and the child's close may be, which
// drops what a client queued unread in it: its fds in flight, whose
// release may wait on that client's FUSE server (forking_server.h). A
// worker that made that close would stall serving an innocent client, and
// hold a worker slot of that client's uid. The child's own connection is
// the other way round: the main process's close of its copy must not be
// the last, so it comes before the worker may read (and so exit for) what
// its client sent.
//
// So, over one socketpair (a byte one way, end of file the other):
//   child                                  main process
//   SetUpChild: closes every fd but 0,
//   1, 2, its keep-set and its end of
//   the gate; then writes one byte  ---->  AwaitChildSetUp, right after fork,
//                                          before anything else: waits for
//                                          that byte (or end of file: the
//                                          child is gone)
//                                          closes its copy of the worker's
//   AwaitOpen: waits for end of file <---  connection, then Open: its end
//   serves (or, a closer, closes what
//   comes)
// The main process's wait cannot wait on a client: while it waits it holds
// its own copies of everything the child closes, so no close the child
// makes is the last and none runs a release. (close(2) runs a file's
// ->flush at every close, not only the last, FUSE's FLUSH among them; but
// the main process holds no client's file: it never receives from a
// connection.) The wait does depend on the child being scheduled: a child
// stopped by SIGSTOP (a compromised worker of the same uid can send it)
// stops the main process until it is continued, which such a worker can do
// to the main process directly anyway (forking_server.h).
//
// A child whose setup failed still says so and waits at the gate, then
// exits: its exit comes after the main process's close of its connection,
// as before.
//
// Not thread-safe; the main process must be single-threaded (fork).
#ifndef CAPBROKER_SDK_SERVICE_CHILD_GATE_H_
#define CAPBROKER_SDK_SERVICE_CHILD_GATE_H_

#include <sys/types.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {

class ChildGate {
 public:
  // A socketpair (AF_UNIX, SOCK_STREAM, close-on-exec): one end for each
  // side. Made before fork.
  static absl::StatusOr<ChildGate> Create();

  ChildGate(ChildGate&&) = default;
  ChildGate& operator=(ChildGate&&) = default;

  // In the child, first: closes its copy of the main process's end; makes
  // itself not dumpable (PR_SET_DUMPABLE 0): every child runs as the same
  // uid and sees its siblings in /proc, and a compromised one could
  // otherwise open a sibling's /proc/PID/mem (the kernel refuses that, as
  // it refuses ptrace, once the target is not dumpable) and read another
  // client's files; asks for SIGKILL when `parent` (the main process) dies
  // (the getppid check covers a parent that died before the prctl); closes
  // every fd but 0, 1, 2, `keep` and its end of the gate; then tells the
  // main process, whatever the outcome. The status of the setup.
  absl::Status SetUpChild(pid_t parent, std::vector<int> keep);

  // In the child, after SetUpChild: waits until the main process opens the
  // gate (or dies), then closes its end.
  absl::Status AwaitOpen();

  // In the main process, right after fork: closes the child's end, then
  // waits until the child has set itself up or is gone (end of file). An
  // error only if the read fails.
  absl::Status AwaitChildSetUp();

  // In the main process: lets the child go on (closes its end).
  void Open() { parent_end_.reset(); }

 private:
  ChildGate(UniqueFd parent_end, UniqueFd child_end)
      : parent_end_(std::move(parent_end)), child_end_(std::move(child_end)) {}

  UniqueFd parent_end_;
  UniqueFd child_end_;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_CHILD_GATE_H_

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
// So, over two pipes:
//   child                                  main process
//   SetUpChild: closes every fd but 0,
//   1, 2, its keep-set and its ends of
//   the gate, first, whatever follows;
//   then the rest of its setup; writes
//   its report (set up, or failed and
//   why), then closes its end of the
//   set-up pipe                     ---->  AwaitChildSetUp, right after fork,
//                                          before anything else: reads the
//                                          set-up pipe to end of file (the
//                                          child has reported and closed it,
//                                          or is gone)
//                                          closes its copy of the worker's
//   AwaitOpen: waits for end of file <---  connection, then Open: closes its
//   on the open pipe                       end of the open pipe
//   serves (or, a closer, closes what
//   comes)
// Fail closed: the main process goes on only when the report says "set
// up" and nothing else. A report that says the setup failed, or none (a
// write can fail: ENOMEM, ENOBUFS under memory pressure; or the child
// died), and it kills the child and reaps it before it goes on. The end of
// file is what ends the wait, not the report: a close always releases the
// fd (Linux closes it even when close(2) reports an error), so a write
// that failed leaves no one waiting for ever. And the main process goes on
// only once the child's set-up end is closed: then the child holds nothing
// but its keep-set and its end of the open pipe. Pipes, not a socketpair:
// a service's seccomp filter refuses socketpair for a family its
// restrictAddressFamilies leaves out, and it allows pipe2 whatever the
// policy.
//
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
// A child whose setup failed (a prctl the seccomp filter refuses, say)
// has closed what it inherited all the same, and is killed: it must not
// run on as a worker, and it holds nothing whose close could be the last.
// The same when the main process cannot wait (its read fails): a child it
// cannot tell set up may still hold copies of what it inherited.
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
  // Two pipes (pipe2, close-on-exec): the set-up pipe, child to main
  // process, and the open pipe, main process to child. Made before fork.
  static absl::StatusOr<ChildGate> Create();

  ChildGate(ChildGate&&) = default;
  ChildGate& operator=(ChildGate&&) = default;

  // In the child, first: closes its copy of the main process's end; closes
  // every fd but 0, 1, 2, `keep` and its ends of the gate; makes itself
  // not dumpable (PR_SET_DUMPABLE 0): every child runs as the same
  // uid and sees its siblings in /proc, and a compromised one could
  // otherwise open a sibling's /proc/PID/mem (the kernel refuses that, as
  // it refuses ptrace, once the target is not dumpable) and read another
  // client's files; asks for SIGKILL when `parent` (the main process) dies
  // (the getppid check covers a parent that died before the prctl); then
  // reports to the main process (set up, or the first failure) and closes
  // its end of the set-up pipe, whatever the outcome. The status of the
  // setup: on failure the main process kills this child, which should
  // only wait at the gate (AwaitOpen) meanwhile.
  absl::Status SetUpChild(pid_t parent, std::vector<int> keep);

  // In the child, after SetUpChild: waits until the main process opens the
  // gate (or dies): end of file on the open pipe; then closes its end.
  absl::Status AwaitOpen();

  // In the main process, right after forking `child`: closes the child's
  // ends, then waits until the child has set itself up, failed to, or is
  // gone (end of file on the set-up pipe). OK only when the child reported
  // itself set up. Else (a failed setup, no report, a failed read) kills
  // `child` (SIGKILL), reaps it and returns why, naming the child: the
  // caller must treat the child as never started. (The wait for its exit cannot wait on a client,
  // as above: this process still holds its copies of everything.)
  absl::Status AwaitChildSetUp(pid_t child);

  // In the main process: lets the child go on (closes its end of the open
  // pipe).
  void Open() { open_write_.reset(); }

 private:
  ChildGate(UniqueFd set_up_read, UniqueFd set_up_write, UniqueFd open_read, UniqueFd open_write)
      : set_up_read_(std::move(set_up_read)),
        open_write_(std::move(open_write)),
        set_up_write_(std::move(set_up_write)),
        open_read_(std::move(open_read)) {}

  // The main process's ends.
  UniqueFd set_up_read_;
  UniqueFd open_write_;
  // The child's.
  UniqueFd set_up_write_;
  UniqueFd open_read_;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_CHILD_GATE_H_

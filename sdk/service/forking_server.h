// ForkingServer: serves each client connection in a worker process of its
// own.
//
//   ScannerHandler handler(...);
//   service->Ready();
//   ForkingServer server(service->broker(), handler, ForkingServer::Options());
//   return server.Run();   // returns when the broker closes the connection
//
// Why. A ConnectionLoop serves every client on one thread, so a request that
// blocks blocks them all, and some blocking no handler can avoid: a file a
// client hands over may lie on a FUSE file system that the client serves
// itself (it can mount one in a user namespace of its own), directly or as
// a lower layer of an overlay. Then fstat, fstatfs and pread on it wait for
// that server, and so does close(), which sends FLUSH; once the server has
// read the request the wait is uninterruptible: not even SIGKILL ends it.
// With a worker per connection such a client stalls its own connection, and
// other clients are served by their own workers.
//
// The main process (this object) keeps the broker connection and takes the
// connections the broker makes for clients (TryAccept). For each it forks a
// worker, which serves that one connection with a ConnectionLoop of its own
// and exits when the client hangs up. The main process closes its copy of
// the connection right after the fork and never reads from it: it never
// receives a client's fds. A worker starts through a gate (child_gate.h),
// two pipes: first thing it closes every fd it inherited but its keep-set
// (below) and says so, and the main process, right after the fork, waits
// for that before it closes, hands on or forks anything (a child whose
// setup failed, or that it cannot wait for, is killed and reaped, and its
// connection refused saying why): no close a child
// makes of a copy it inherited (another client's connection, parked or
// queued in the Client) is ever the last one, which would drop what that
// client queued in it, as below, in a worker serving someone else. Then
// the main process closes its copy of the worker's connection, and then its
// end of the gate; the worker waits for that end of file before it reads
// anything of its client's: the main process's close must not be the last
// either, and a worker could exit for what the client sent (a bad first
// datagram). In its setup the worker:
//  - makes itself not dumpable (PR_SET_DUMPABLE 0): the workers share a
//    uid and see each other in /proc, and a compromised one could
//    otherwise open a sibling's /proc/PID/mem (the service's seccomp filter
//    stops ptrace and process_vm_readv, not open) and read another client's
//    files. It can still signal its siblings and the main process, which
//    share its uid: see below;
//  - asks for SIGKILL when the main process dies (PR_SET_PDEATHSIG);
//  - closes every fd except 0, 1, 2, its connection, Options::worker_fds
//    and its end of the gate: the broker connection, the other clients'
//    connections (parked or queued), the main process's epoll and pidfds,
//    whatever else the process held. A worker compromised by what its client sent
//    holds that client's connection and files only; other clients' files
//    and requests never were in its memory (the main process never reads
//    them), though it has a copy of the main process's table of workers
//    (who else is connected: principal, uid, pid). What it can do to the
//    others is signal them (kill(2) within one uid; nothing here filters
//    it): kill other clients' workers, and stop or end the main process,
//    which ends the service for every client. kill(getppid(), SIGKILL) or
//    SIGSTOP does that when the main process is not its pid namespace's
//    init (a policy with privatePids off); as that init (privatePids, the
//    default) it takes from its namespace only the signals it handles,
//    and a service handles SIGTERM, which stops it. The closer can do the
//    same.
//
// Refused connections go to a closer. Closing a connection is not always
// harmless: the last close of a socket drops what waits unread in it, and
// dropping a client's fd there runs that file's release in the closing
// thread; a TCP socket lingering on close (SO_LINGER, data its peer never
// reads) waits out its linger there, as long as its sender likes. Such a
// service takes fds from its clients (its policy says acceptsFds), so a
// client can queue one into its connection before it is refused (below),
// and were the main process to close that connection, every client would
// wait. So after the refusal reply the main process hands the connection
// to the closer, a child process that receives connections over a
// SOCK_SEQPACKET socketpair (SCM_RIGHTS, MSG_CMSG_CLOEXEC) and closes them:
// a stall holds only the closer.
//  - The closer is started at the first refusal, through a gate and set up
//    as a worker is (not dumpable; its end of the socketpair is the one fd
//    it keeps), is watched and reaped like one, and exits at end of stream.
//  - The main process's close of its copy must not be the last: the closer
//    closes what a datagram carried only when the next datagram comes, and
//    the main process sends one (empty) after its close.
//  - The main process never waits for it: sends do not block. A closer
//    whose socket is full (about 20 connections waiting: the main process's
//    end has a small send buffer) is stuck; the main process kills it
//    (SIGKILL ends a linger wait, and an exiting process does not linger at
//    all), waits up to 100 ms for its exit, and hands the connection to a
//    new closer.
//  - A close that SIGKILL does not end (a release waiting uninterruptibly
//    on a file system's server) keeps a killed closer alive, so at most
//    Options::max_closers are alive at once. Beyond that, or when no closer
//    can be started (fork fails: a connection refused because no worker
//    could be forked finds no closer either unless one runs already), or
//    when a second closer takes it no more than the first, the connection
//    waits in the main process (it is "parked"; logged), which never closes
//    a refused connection itself while it serves: each turn, and each new
//    connection before it is taken, offers the parked ones, in order, to a
//    closer again (woken by a closer's exit, or every 100 ms while there is
//    room for one more closer). While a uid has connections parked,
//    its new connections are refused ("N refused connections of uid U wait
//    to be closed ..."), and join them. At most 16 are parked (an fd each,
//    reserved with the closers'); while that many are, the main process
//    takes no new connection (it is logged): they wait in its broker
//    socket, and once that is full the broker tells clients that the
//    service is busy. Workers go on serving, and the main process goes on
//    reaping them. At destruction (serving over), once the workers are
//    killed and reaped, those no closer takes are closed there, last,
//    which may delay only the exit.
// What can block a close, and so why closers exist. close(2) of an fd
// calls the file's ->flush (FUSE sends FLUSH, and waits) and drops a
// reference; the last reference's drop runs ->release, in the thread that
// dropped it (fput defers it to that thread's return to user space). A
// client's fds in flight, queued unread in a connection, are not in any fd
// table: releasing that connection (its last close) drops them with fput,
// so no FLUSH is sent for them, but the last reference of each is released
// there: a TCP socket lingering on close waits out its linger (SIGKILL ends
// that wait, and an exiting process does not linger), and a FUSE file's
// release can wait on the client's server (a mount with writeback caching
// writes the inode back first, by a request that SIGKILL does not end once
// the server has read it). That is what a closer runs. It receives only
// connections, sockets with no ->flush; the files their clients queued
// reach no fd table of the service but a worker's (its requests' fds,
// which it closes itself, FLUSH and all).
// Left: a served connection's close in the main process would be the last
// if its worker, waiting at the gate, were killed in that instant by a
// signal from elsewhere (a compromised worker of the same uid, which can
// signal its siblings; the OOM killer).
//
// Logging: the main process logs what happens to the service (refusals,
// workers that died of a signal or failed, closers killed) within one
// budget (Options::max_log_lines_per_second). A worker logs nothing its
// client causes: a worker that closed its connection for what the client
// sent says so, and what it was (ClientFault: not a message, fds it does
// not take, a datagram not received whole, a request its handler could not
// read, a socket that refuses its reply's fds), by its exit code (3 to 7),
// as it says a reply it could not send for another reason (exit code 8: a
// reply too large or with too many fds, or refused by the kernel, as
// ETOOMANYREFS, which clients that do not read their replies' fds cause),
// and the main process logs one line saying which within that budget, so
// that a client opening connection after connection, each with one bad
// datagram, cannot flood the log with a fresh worker's budget each.
//
// Workers run the handler as it was at the fork: what a handler changes in
// one worker no other worker and no later worker sees. Only handlers whose
// state needs no sharing fit (the scanner: a read-only signature database).
//
// Limits, from Options: at most max_workers_per_uid workers for the
// connections of one client uid (the uid the broker established) and
// max_workers in all. A connection beyond either, or one for which no worker
// can be started (fork fails: EAGAIN at RLIMIT_NPROC or the cgroup's
// pids.max, ENOMEM), is refused: it gets the handler's refusal reply if its
// protocol has one (RequestHandler::SetRefusal), so that the client reads
// why as the reply to its first request; goes to the closer, and a line on
// stderr says why. Serving goes on.
//
// Reaping: every worker and closer has a pidfd in the main loop's epoll
// set, and is reaped (waitid) in the turn its pidfd becomes readable, before
// that turn's new connections are taken: no zombie outlives a turn, and a
// connection that comes after a worker's exit finds its slot free. A
// worker stuck on a FUSE server counts against its uid's cap until that
// server answers or goes away (its connection is aborted when the server's
// last /dev/fuse fd closes).
//
// Destruction sends SIGKILL to the workers left and reaps those that die,
// then hands the parked connections to a closer, sends SIGKILL to the
// closers and reaps them, all within a second; one stuck in such an
// uninterruptible wait cannot be waited for, and is left to the process
// that reaps orphans. The parked connections no closer took are closed
// last: a close that blocks cannot keep the workers serving.
//
// Not thread-safe. The caller must be single-threaded, since workers run
// ordinary code (malloc, stdio) after fork.
#ifndef CAPBROKER_SDK_SERVICE_FORKING_SERVER_H_
#define CAPBROKER_SDK_SERVICE_FORKING_SERVER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "capnp/message.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"
#include "sdk/service/child_gate.h"
#include "sdk/service/connection_loop.h"
#include "sdk/service/rate_limited_log.h"

namespace capbroker {

class ForkingServer {
 public:
  struct Options {
    // Workers at once for the connections of one client uid.
    size_t max_workers_per_uid = 4;
    // Workers at once in all. Within the service's `limits.processes`
    // (RLIMIT_NPROC, which counts the main process and the closers too)
    // and `pidsMax`, or forks fail and connections are refused. Lowered
    // when the server starts to what RLIMIT_NOFILE leaves room for (a
    // pidfd each, after the fds open then, the closers' and a reserve:
    // fd_room.h), which is logged.
    size_t max_workers = 64;
    // Closers alive at once: the one that takes refused connections and
    // those killed (stuck) that have not exited yet. 0: no closer; refused
    // connections stay parked while the server runs (for tests).
    size_t max_closers = 4;
    // Fds (borrowed) the handler uses, which workers keep; workers close
    // every other fd but 0, 1, 2 and their connection.
    std::vector<int> worker_fds;
    // The loop each worker runs over its one connection.
    ConnectionLoop::Options worker_loop;
    // Lines the main process logs to stderr per second (refusals, workers
    // that died of a signal or failed).
    int max_log_lines_per_second = 20;
    // For tests: called in the main process with the pid of each worker
    // and closer it starts, once the child has set itself up (closed what
    // it inherited) and before the main process goes on (closes its copy
    // of the worker's connection, opens the gate).
    std::function<void(pid_t)> child_set_up_for_test;
  };

  // Borrows `broker` (the service's broker connection, on which Ready() has
  // been said) and `handler`; both must outlive the server. The main
  // process never calls the handler; workers do, and they hold no broker
  // connection. The main process may call the broker between turns: the
  // connections that arrive meanwhile wait in the Client's queue, which the
  // broker fd no longer shows, and the next turn takes them before it
  // waits.
  // Refused connections no closer takes wait in the main process, at most
  // this many (an fd each, reserved with the closers'); while that many
  // wait it takes no new connection. They are never closed there while it
  // serves.
  static constexpr size_t kMaxParked = 16;

  ForkingServer(Client& broker, RequestHandler& handler, Options options);
  ~ForkingServer();

  // For a service that serves with a ForkingServer, at start, before it
  // says ready (Serve does): does in this process what every worker and
  // closer does in its setup that the sandbox may refuse, and
  // Service::FromEnvironment does not: prctl(PR_SET_PDEATHSIG, SIGKILL),
  // left set (a service the broker starts has it set already). A seccomp
  // filter that refuses it would fail every child's setup, and every
  // connection would be refused; the service fails to start instead, with
  // that error.
  static absl::Status CheckChildrenCanSetUp();

  ForkingServer(const ForkingServer&) = delete;
  ForkingServer& operator=(const ForkingServer&) = delete;

  // Serves until the broker closes the service's connection: OK then (the
  // service should exit). An error when the main loop cannot go on (epoll
  // fails, the broker sends something that is not an event).
  absl::Status Run();

  // One turn of Run: takes the connections the Client has queued, then
  // waits up to `timeout_ms` (-1: without limit; not at all when it took
  // any) for events (a connection, a worker's exit) and handles those that
  // are ready.
  // false once the broker has closed the connection. For tests.
  absl::StatusOr<bool> Turn(int timeout_ms = -1);

  // Workers running (or exited and not reaped yet), in all and for `uid`.
  size_t worker_count() const { return workers_.size(); }
  size_t worker_count(uint32_t uid) const;

 private:
  struct Worker {
    UniqueFd pidfd;
    pid_t pid = 0;
    Peer peer;
  };
  struct Closer {
    UniqueFd pidfd;
    pid_t pid = 0;
  };
  // A refused connection no closer has taken yet.
  struct Parked {
    UniqueFd connection;
    Peer peer;
  };

  absl::Status Init();
  absl::StatusOr<bool> AcceptAll();
  // Starts a worker for `incoming`, or refuses it.
  void Start(IncomingConnection incoming);
  // Why `peer` may not have another worker now; OK if it may.
  absl::Status OverLimit(const Peer& peer) const;
  // The worker's life after fork: sets itself up through `gate` and waits
  // for it to open, which the main process does after it has closed its
  // copy of the connection; serves `incoming`, then exits.
  [[noreturn]] void ServeInWorker(IncomingConnection incoming, pid_t parent, ChildGate& gate);
  // Right after forking child `pid`: waits until it has set itself up,
  // then calls Options::child_set_up_for_test. An error when its setup
  // failed or this process cannot wait (the error says which and why): the
  // child is killed and reaped then, and counts as never started.
  absl::Status AwaitChildSetUp(ChildGate& gate, pid_t pid);
  // Sends the refusal reply on `connection`, then parks it and hands the
  // parked connections to a closer (HandParked).
  void Refuse(UniqueFd connection, const Peer& peer, const absl::Status& reason);
  // Hands the parked connections, oldest first, to a closer until one is
  // not taken.
  void HandParked();
  // Hands `connection` (borrowed; reset once handed) to the closer,
  // starting one if needed; an error saying why if no closer takes it, the
  // connection left to the caller. Never closes it otherwise.
  absl::Status HandToCloser(UniqueFd& connection);
  // Refused connections of `uid` that wait in parked_.
  size_t parked_count(uint32_t uid) const;
  // Watches the broker fd for `incoming` connections, or (false: the park
  // is full) for its hang-up alone.
  absl::Status WatchBroker(bool incoming);
  // Starts a closer, which becomes the current one.
  absl::Status StartCloser();
  // Kills the current closer (for `why`) and waits briefly for its exit.
  void KillCloser(absl::string_view why);
  // The closer's life after fork: sets itself up through `gate`, closes
  // what comes on `socket`, then exits.
  [[noreturn]] static void CloseInCloser(int socket, pid_t parent, ChildGate& gate);
  // A pidfd on child `pid`, in the epoll set. On failure the child, which
  // nothing would reap or count, is killed and left to ReapKilled.
  absl::StatusOr<UniqueFd> Watch(pid_t pid);
  // Reaps the worker or closer whose pidfd is `pidfd` if it has exited.
  void Reap(int pidfd);
  // Reaps the children that have exited by now (a zero-timeout look at the
  // epoll set): a connection taken in the same turn as others, after a
  // worker exited, finds that worker's process slot free.
  void ReapExited();
  // Reaps what it can of killed_.
  void ReapKilled();
  // Reaps children as they exit until the workers and killed_ (and with
  // `closers` the closers) are gone or the monotonic clock passes
  // `deadline` (ms). For destruction, once they have been sent SIGKILL.
  void ReapUntil(int64_t deadline, bool closers);

  Client& broker_;
  RequestHandler& handler_;
  const Options options_;
  // options_.max_workers, or what the fd table has room for.
  size_t max_workers_;
  UniqueFd epoll_;
  bool started_ = false;
  bool stopping_ = false;  // in the destructor: SIGKILL is ours, not news
  std::unordered_map<int, Worker> workers_;  // by pidfd
  std::unordered_map<uint32_t, size_t> per_uid_;
  std::unordered_map<int, Closer> closers_;  // by pidfd
  // The current closer: its key in closers_ and the main process's end of
  // its socket; -1 and invalid when there is none.
  int closer_ = -1;
  UniqueFd closer_socket_;
  // Refused connections waiting for a closer, oldest first; at most
  // kMaxParked.
  std::deque<Parked> parked_;
  // Whether the broker fd is watched for its hang-up alone (the park is
  // full).
  bool broker_paused_ = false;
  // Children killed because no pidfd could be opened on them (see Fork),
  // not yet reaped: waited for without an event, at every turn.
  std::vector<pid_t> killed_;
  // Client::dropped_incoming when last logged (DroppedIncomingLine).
  uint64_t dropped_seen_ = 0;
  RateLimitedLog log_;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_FORKING_SERVER_H_

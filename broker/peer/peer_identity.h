// Identifying the process at the other end of a connection.
//
// SO_PEERCRED gives the uid, gid and pid the peer had at connect(). A pid
// alone proves nothing: the process can exit and the number be reused. So
// the broker also takes SO_PEERPIDFD, a pidfd for the very process that
// connected, reads /proc/PID/exe, and then checks through the pidfd that the
// process is still alive. A live process keeps its pid, so what was read
// belongs to it and not to a successor with the same number. If the peer
// exits first, the exe is left unknown, and policy rules that name an
// executable do not match (fail closed).
//
// The exe is taken only if its path, in the broker's own mount namespace,
// names the very file the process runs (device and inode), so a bind mount
// in a namespace of the client's own cannot lend it a trusted name.
//
// Limits of exe matching: it names what the peer was running when the
// broker accepted it. A process that connects and then execs a trusted
// binary (keeping a forked child with the socket) borrows that binary's name,
// and any user who can run the binary can do that. So the policy refuses an
// exe criterion alone: it must come with uid or gid, and then it only
// narrows what those users' programs get. See README "Principals".
#ifndef CAPBROKER_BROKER_PEER_PEER_IDENTITY_H_
#define CAPBROKER_BROKER_PEER_PEER_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "broker/policy/identity.h"

namespace capbroker::peer {

// What SO_PEERCRED said of the peer of one connected AF_UNIX socket: the
// uid, gid and pid it had at connect(), and the socket they were read from
// (borrowed: it must stay open while this is used). Only PeerCredentials
// makes one, so credentials are always some socket's own and IdentifyPeer
// never has to ask the socket again whether they are. Copyable: a copy is
// still what the socket said.
class Credentials {
 public:
  uint32_t uid() const { return uid_; }
  uint32_t gid() const { return gid_; }
  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }

 private:
  friend absl::StatusOr<Credentials> PeerCredentials(int fd);
  Credentials(int fd, uint32_t uid, uint32_t gid, pid_t pid)
      : fd_(fd), uid_(uid), gid_(gid), pid_(pid) {}

  int fd_;
  uint32_t uid_;
  uint32_t gid_;
  pid_t pid_;
};

// The credentials of the peer of the connected AF_UNIX socket `fd`
// (borrowed). Takes no fd and reads no file: the connection quotas, which
// go by uid, are checked on these before IdentifyPeer spends fds on the
// peer.
absl::StatusOr<Credentials> PeerCredentials(int fd);

// The peer `credentials` describe, with the exe it runs when that can be
// verified (see above; else left unknown). The pidfd comes from the same
// socket (credentials.fd()), so it vouches for that socket's peer, the pid
// in `credentials`, and for no other. kResourceExhausted when the broker is
// out of fds (EMFILE/ENFILE) and so cannot verify the peer (the pidfd, or
// the open of its executable, fails for lack of an fd): refuse the
// connection rather than trust its pid, or admit it with its exe unknown
// for good.
absl::StatusOr<Identity> IdentifyPeer(const Credentials& credentials);

}  // namespace capbroker::peer

#endif  // CAPBROKER_BROKER_PEER_PEER_IDENTITY_H_

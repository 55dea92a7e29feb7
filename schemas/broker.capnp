# The capbroker wire protocol.
#
# Transport: an AF_UNIX SOCK_SEQPACKET connection. Every datagram holds exactly
# one Cap'n Proto message in the standard (unpacked) framing, and the file
# descriptors that belong to it ride in SCM_RIGHTS of the same datagram. The
# message's `fds` list says how many fds the datagram carries and what each
# one is, in order; a datagram whose fd count differs from its list is invalid.
#
# A client sends `Request`s and receives `Reply`s. The first request on a
# connection must be `hello`. Every request carries a nonzero id, and the reply
# to it echoes that id, so a client may keep several requests outstanding; the
# broker answers the requests of one connection in the order it received them,
# except that the reply to a `connect` to a service that is still starting
# comes when the service is ready (other replies may overtake it).
#
# Compatibility: fields and union members are only ever added, never renumbered
# or removed. `protocolVersion` changes only for incompatible changes.
@0x861840f56433057f;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("capbroker::schema");

const protocolVersion :UInt32 = 1;

enum Access {
  # In a request, `unspecified` asks for the access the grant allows.
  unspecified @0;
  read @1;
  write @2;
  readWrite @3;
  append @4;
}

enum Kind {
  file @0;       # a regular file
  directory @1;  # a directory (O_DIRECTORY | O_RDONLY)
  memory @2;     # a sealed memfd: it cannot grow or shrink
  connection @3; # a SEQPACKET socket connected to a service
}

struct FdInfo {
  # Describes one fd of the datagram that carries the message.
  name @0 :Text;       # the capability's name in the policy
  kind @1 :Kind;
  access @2 :Access;
  size @3 :UInt64;     # memory: the size of the memfd in bytes
  path @4 :Text;       # directory open: the path opened beneath it
}

struct Request {
  id @0 :UInt64;           # nonzero; echoed by the reply
  fds @1 :List(FdInfo);    # requests carry no fds today: must be empty
  union {
    hello @2 :Hello;
    acquire @3 :Acquire;
    openBeneath @4 :OpenBeneath;
    list @5 :Void;         # what this client may ask for (see listPage)
    status @6 :Void;
    connect @7 :Connect;
    ready @8 :Void;        # services only: the service is ready to serve
    services @9 :Void;     # what `capctl services` shows (see servicesPage)
  }
  listPage @10 :ListPage;  # with `list`: see ListPage
  servicesPage @11 :ServicesPage;  # with `services`: see ServicesPage
}

struct ListPage {
  # A `list` request that carries this asks for one page of the list: the
  # capabilities named after `startAfter`, in ascending bytewise order of
  # name, as many as fit in one datagram (at least one). The reply is
  # `capabilities`; when its `more` is set, ask again with `startAfter` the
  # page's last name. Every page follows the policy in force when it is
  # asked for: a reload (SIGHUP) between two pages shows in the later ones.
  # A `list` without it (a client older than pages) gets the whole list in
  # one `list` reply, or resourceExhausted when it needs more than a page.
  # It sits outside the union so that a broker older than pages, which does
  # not know it, reads a plain `list` and answers it whole: the reply's
  # kind tells the client which it got.
  startAfter @0 :Text;     # empty: from the first
}

struct ServicesPage {
  # A `services` request that carries this asks for one page of the
  # report, as ListPage does for `list`: the services after (`startAfter`,
  # `startAfterRemoved`), in ascending order of name (bytewise) and, for
  # one name, the service of the policy before an instance removed from it
  # that has not exited yet (ServiceInfo.removed), as many as fit in one
  # datagram (at least one). The reply is `servicePage`; when its `more` is
  # set, ask again after the page's last entry. A `services` without it (a
  # client older than pages) gets the whole report in one `services` reply,
  # or resourceExhausted when it needs more than a page. Outside the union
  # for the reason ListPage is.
  startAfter @0 :Text;        # empty: from the first
  startAfterRemoved @1 :Bool; # the `removed` of the entry named startAfter
}

struct Connect {
  # Asks for a connection to the hosted service `service`. The reply is a
  # grant whose fd (kind connection) is one end of a new SEQPACKET
  # socketpair; the service receives the other end in an `incoming` event.
  # An on-demand service is started first; the reply comes when it is ready
  # or with the reason it could not start.
  service @0 :Text;
}

struct Hello {
  version @0 :UInt32;      # the protocolVersion the client speaks
}

struct Acquire {
  # Asks for the capability `name`, with `access` no wider than the grant.
  name @0 :Text;
  access @1 :Access;
}

struct OpenBeneath {
  # Asks the broker to open `path` beneath the directory capability
  # `directory`. The broker resolves it with openat2(RESOLVE_BENEATH |
  # RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): no `..` escape, no symlink.
  directory @0 :Text;
  path @1 :Text;           # relative, at most 4095 bytes
  access @2 :Access;       # no wider than the directory grant
  create @3 :Bool;         # create the file if missing (needs write access)
  mode @4 :UInt32 = 0600; # permission bits of a created file (& 0777)
  truncate @5 :Bool;       # truncate an existing file (needs write access)
}

enum ErrorCode {
  unknown @0;
  invalidRequest @1;      # malformed or out-of-protocol request
  permissionDenied @2;    # the policy does not grant it
  notFound @3;            # no such capability, or no such file
  resourceExhausted @4;   # a limit was reached
  unavailable @5;         # the broker or a resource is not available
  unsupportedVersion @6;  # the hello named a version the broker lacks
  failedPrecondition @7;  # the request is valid but cannot be done now
  internal @8;            # the broker failed
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;       # one line: the reason, naming the policy rule
}

struct HelloReply {
  version @0 :UInt32;
  principals @1 :List(Text);  # the policy principals this connection matches: the
                              # first 8, in policy order
  uid @2 :UInt32;             # the identity the broker sees
  gid @3 :UInt32;
  pid @4 :Int32;
  exe @5 :Text;
  morePrincipals @6 :UInt32;  # how many more match, not in `principals`
}

struct CapabilitySummary {
  name @0 :Text;
  kind @1 :Kind;
  access @2 :Access;       # the widest access the caller may ask for
  path @3 :Text;           # file and directory: the path in the policy
  size @4 :UInt64;         # memory: the size in bytes
}

struct ReasonCount {
  reason @0 :Text;
  count @1 :UInt64;
}

struct BrokerStatus {
  # "root or the broker's uid" below means a client of that uid, never a
  # hosted service: a per-user broker runs its services as its own uid, and
  # their sandbox hides the policy from them. The same holds for the texts
  # of ServiceInfo.
  version @0 :UInt32;
  uptimeSeconds @1 :UInt64;
  connections @2 :UInt32;
  grants @3 :UInt64;
  denials @4 :UInt64;
  denialsByReason @5 :List(ReasonCount);
  policyPath @6 :Text;              # empty unless the caller is root or the broker's uid
  capabilities @7 :UInt32;
  principals @8 :UInt32;
  policyGeneration @9 :UInt64;      # 1 at start; +1 per successful reload
  policyReloadFailures @10 :UInt64; # reloads refused (the policy stayed)
  lastReloadError @11 :Text;        # why the last reload was refused: empty once a
                                    # later one was installed, and unless the caller
                                    # is root or the broker's uid
  lastReloadSecondsAgo @12 :Int64 = -1; # since the last reload (SIGHUP), installed or
                                    # refused; -1: none yet
  lastReloadRefused @13 :Bool;      # whether that last reload was refused
  auditLinesLost @14 :UInt64;       # audit lines that could not be written (of any
                                    # kind; a grant whose line was lost was withheld)
  auditLogError @15 :Text;          # why the last reopen of the audit log (SIGHUP,
                                    # or after its file was deleted) was refused (the
                                    # broker goes on in the file open
                                    # before): empty once a reopen worked, and unless
                                    # the caller is root or the broker's uid
  auditLinesToDeletedFiles @16 :UInt64; # audit lines written to the log's file
                                    # after it was last seen with its name, when it
                                    # was then found deleted (rm): lost with it
}

struct PeerInfo {
  # Who is on the other end of an incoming service connection, as the
  # broker established it (never what the client said about itself).
  principal @0 :Text;      # the policy principal (or service) that allowed it
  uid @1 :UInt32;
  gid @2 :UInt32;
  pid @3 :Int32;           # in the broker's pid namespace; 0 for a service
}

enum ServiceState {
  stopped @0;    # not running; starts on the first connection (onDemand)
  starting @1;   # launched, not ready yet
  running @2;    # ready and serving
  backoff @3;    # exited; restarts after a delay
  failed @4;     # gave up: exited more often than its restart limit
  stopping @5;
}

struct ServiceInfo {
  name @0 :Text;
  state @1 :ServiceState;
  pid @2 :Int32;              # in the broker's pid namespace; 0 when none
  restarts @3 :UInt32;        # since the broker started it first
  uptimeSeconds @4 :UInt64;   # of the current run; 0 when not running
  protections @5 :Text;       # in force: "userns mountns ... landlock:7"
  missing @6 :Text;           # best-effort protections not in force, and why
  lastExit @7 :Text;          # "exit status 0", "killed by SIGSEGV; its output
                              # is in the broker's log" (a failed run), or empty
  activation @8 :Text;        # "onDemand" or "atStart"
  removed @9 :Bool;           # an old instance (removed from the policy, or
                              # restarted by a reload), still stopping; the
                              # policy's own, if it has one of this name, is
                              # another entry
  # The texts (protections, missing, lastExit, activation) hold at most
  # 4096 bytes each (wire::kMaxServiceTextBytes); a longer one is cut and
  # ends "... (truncated; N bytes)". The broker's log has them whole.
  # missing and lastExit can quote capability paths and the policy's: unless
  # the caller is root or the broker's uid, a nonempty one reads
  # "(shown to root and the broker's user)".
}

struct Reply {
  # A reply answers one request and echoes its id. Id 0 marks an event the
  # broker sends unasked: today only `incoming`, sent to services.
  id @0 :UInt64;           # the request's id
  fds @1 :List(FdInfo);    # one entry per fd in SCM_RIGHTS, in order
  union {
    error @2 :Error;
    hello @3 :HelloReply;
    granted @4 :Void;      # the capability is fds[0]
    list @5 :List(CapabilitySummary);  # a `list` without `listPage`: all of it
    status @6 :BrokerStatus;
    incoming @7 :PeerInfo;   # event: a new connection, fds[0]
    services @8 :List(ServiceInfo);  # a `services` without `servicesPage`: all of it
    ready @9 :Void;          # the broker took note of the readiness
    capabilities @10 :CapabilityPage;  # a `list` with `listPage`: one page
    servicePage @11 :ServicePage;      # a `services` with `servicesPage`: one page
  }
}

struct CapabilityPage {
  entries @0 :List(CapabilitySummary);  # ascending bytewise by name
  more @1 :Bool;           # more follow: ask after the last entry's name
}

struct ServicePage {
  entries @0 :List(ServiceInfo);  # ascending by name, then removed
  more @1 :Bool;           # more follow: ask after the last entry
}

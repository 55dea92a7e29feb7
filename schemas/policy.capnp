# The capbroker policy: which principal may receive which capability.
#
# A policy file is one `Policy` struct literal in Cap'n Proto text format, with
# `#` comments. Deny by default: a client receives a capability only when a
# principal that matches it lists the capability in its grants.
#
# Compatibility: fields are only ever added, never renumbered or removed.
@0xdab3c397cf210119;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("capbroker::policy");

using Broker = import "broker.capnp";

struct Policy {
  capabilities @0 :List(Capability);
  principals @1 :List(Principal);
  services @2 :List(Service);
}

struct Capability {
  name @0 :Text;            # unique; [A-Za-z0-9_.-], at most 64 bytes,
                            # the first a letter or digit
  union {
    unset @1 :Void;         # no kind given: an error
    file @2 :FileCapability;
    directory @3 :DirectoryCapability;
    memory @4 :MemoryCapability;
  }
}

struct FileCapability {
  path @0 :Text;            # absolute
  access @1 :Broker.Access; # read, write, readWrite or append
  create @2 :Bool;          # create the file if missing (needs write access)
  mode @3 :UInt32 = 0600;  # permission bits of a created file
  truncate @4 :Bool;        # truncate on open (needs write access)
  followSymlinks @5 :Bool;  # resolve symlinks in `path` (off: refuse them)
}

struct DirectoryCapability {
  path @0 :Text;            # absolute
  access @1 :Broker.Access; # the widest access for files opened beneath it
  followSymlinks @2 :Bool;  # resolve symlinks in `path` itself
}

struct MemoryCapability {
  size @0 :UInt64;          # bytes, 1 to 1 GiB
  shared @1 :Bool;          # one memfd for all grantees (else one per grant)
}

struct Principal {
  name @0 :Text;            # unique; [A-Za-z0-9_.-], at most 64 bytes,
                            # the first a letter or digit
  match @1 :Match;
  grants @2 :List(Text);    # names of capabilities in this policy
}

struct Match {
  # Every criterion given must hold. At least one must be given.
  uid @0 :Int64 = -1;       # the peer's uid (-1: any)
  gid @1 :Int64 = -1;       # the peer's primary gid (-1: any)
  exe @2 :Text;             # the peer's executable, an absolute path
  anyUser @3 :Bool;         # match every local user; alone, says so plainly
}

struct Service {
  # A program the broker launches confined and supervises. Its principal is
  # its name: a service is known by the connection the broker made for it,
  # never by matching uid or exe. Names are unique among principals and
  # services together, of the same form as a principal's.
  name @0 :Text;
  command @1 :List(Text);     # argv; command[0] is the program, an absolute path
  environment @2 :List(Text); # "KEY=VALUE"; nothing is inherited
  grants @3 :List(Text);      # capabilities delivered at start (fds 3..), and
                              # which the service may also request
  connect @4 :List(Text);     # principals and services that may connect to it
  activation @5 :Activation;
  restart @6 :Restart;
  restartLimit @7 :UInt32 = 5;      # restarts in a row before giving up
  restartDelayMs @8 :UInt32 = 100;  # first delay, 1 to 30000; doubles each time, to 30 s
  startTimeoutMs @9 :UInt32 = 10000; # from launch to readiness
  readiness @10 :Readiness;
  user @11 :Int64 = -1;       # uid to run as (-1: nobody for a root broker,
  group @12 :Int64 = -1;      # else the broker's own uid and gid)
  limits @13 :ResourceLimits;
  sandbox @14 :Sandbox;
  acceptsFds @15 :Bool = false;  # clients' requests may carry fds; else the
                                 # kernel refuses them (sendmsg fails: EPERM)
}

enum Activation {
  onDemand @0;  # started by the first connection
  atStart @1;   # started with the broker
}

enum Restart {
  onFailure @0; # after a non-zero exit or a signal
  never @1;
  always @2;    # after any exit
}

enum Readiness {
  notify @0;    # ready when it says so (the SDK's Ready(); a `ready` request)
  exec @1;      # ready once the program has started
}

struct ResourceLimits {
  # 0: not limited beyond the broker's own limits; but openFiles and
  # processes. Memory is bounded only by addressSpace and memoryMax: by
  # default a service may take all the broker's.
  openFiles @0 :UInt64;       # RLIMIT_NOFILE, soft and hard; 0: 1024 (the broker's
                              # hard limit if lower), never the broker's own
  addressSpace @1 :UInt64;    # RLIMIT_AS, bytes
  processes @2 :UInt64;       # RLIMIT_NPROC, soft and hard, threads included, counted
                              # per uid and user namespace: with privateUsers the
                              # service's processes alone. 0: 512 (the broker's hard
                              # limit if lower) with privateUsers; without, the
                              # broker's own (the count would take in every process
                              # of the uid on the host; listed as missing)
  cpuSeconds @3 :UInt64;      # RLIMIT_CPU
  memoryMax @4 :UInt64;       # cgroup memory.max, bytes (needs --cgroup)
  pidsMax @5 :UInt64;         # cgroup pids.max (needs --cgroup)
}

enum Protection {
  required @0;   # the service does not start without it
  bestEffort @1; # used when the kernel allows it, else logged as missing
  off @2;
}

enum AddressFamily {
  unix @0;
  inet @1;
  inet6 @2;
  netlink @3;
}

struct Sandbox {
  # Every protection is required unless turned down here. Names follow
  # systemd's directives where one exists.
  privateUsers @0 :Protection;     # a user namespace; no capability outside it
  protectSystem @1 :Protection;    # a mount namespace with a minimal read-only
                                   # root: system directories, private /tmp,
                                   # its own /proc, a minimal /dev
  privatePids @2 :Protection;      # a pid namespace; the service is its pid 1
  privateIpc @3 :Protection;       # an ipc namespace
  protectHostname @4 :Protection;  # a uts namespace
  privateNetwork @5 :Protection;   # a network namespace with no interfaces
  noNewPrivileges @6 :Protection;  # no setuid, no file capabilities
  dropCapabilities @7 :Protection; # empty bounding and ambient sets
  systemCallFilter @8 :Protection; # seccomp: no ptrace, mount, bpf, ...
  landlock @9 :Protection;         # no file access beyond the program,
                                   # system directories and its grants
  restrictAddressFamilies @10 :List(AddressFamily) = [unix];
}

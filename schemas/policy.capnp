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
}

struct Capability {
  name @0 :Text;            # unique; [A-Za-z0-9_.-], at most 64 bytes
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
  name @0 :Text;            # unique; [A-Za-z0-9_.-], at most 64 bytes
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

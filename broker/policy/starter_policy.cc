#include "broker/policy/starter_policy.h"

namespace capbroker {
namespace {

constexpr char kStarterPolicy[] = R"POLICY(# capbroker policy: which clients may receive which capabilities.
#
# Deny by default. A client receives a capability only when a principal that
# matches the client lists it in `grants`, and never with more access than
# the capability gives. Check a file with `capctl policy check FILE`.
#
# Syntax: Cap'n Proto text format (schemas/policy.capnp). One struct in
# parentheses; `name = value` fields separated by commas; lists in [ ];
# strings in double quotes; `#` starts a comment. Numbers are read as in C:
# 0600 is octal, 0x1f hex, 42 decimal.
#
# Lines that start with "# " followed by a field or a list entry are
# alternatives: remove that "# " to use one; each works on its own and with
# the others.
#
# The file must be owned by root (or the broker's user) and must not be
# writable by group or others.
(
  # Capabilities: what the broker can hand out. Names are unique, 1 to 64 of
  # A-Z a-z 0-9 _ . -, the first a letter or digit. Each capability has
  # exactly one kind: file, directory or memory.
  capabilities = [
    # The scanner's signature database, for the service example below:
    # ( name = "signatures", file = ( path = "/usr/local/share/capbroker/signatures.txt", access = read ) ),

    ( name = "motd",
      # A file capability hands out an fd of one file.
      file = (
        path = "/etc/motd",     # absolute and normalized (no . .. // or trailing /)
        access = read,          # read, write, readWrite or append
        create = false,         # create the file if missing (needs write, readWrite or append)
        mode = 0600,            # permission bits of a created file; octal, no setuid/setgid
        truncate = false,       # truncate on open (needs write or readWrite)
        followSymlinks = false  # false: refuse symlinks in `path`
      ) ),

    ( name = "spool",
      # A directory capability hands out the directory, and lets clients
      # open files beneath it (never above it, never through symlinks).
      # With readWrite, every client granted it may also write and truncate
      # any file beneath it, and create new ones: owned by the broker's user
      # (root, for a system broker), with the mode the client asks for, up
      # to 0777, less the broker's umask. Give read where clients only read.
      directory = (
        path = "/var/spool/demo",
        access = readWrite,     # read or readWrite: the widest access for files beneath
        followSymlinks = false  # false: refuse symlinks in `path` itself
      ) ),

    ( name = "scratch",
      # A memory capability hands out a sealed memfd: its size is fixed,
      # its contents are readable and writable.
      memory = (
        size = 65536,           # bytes, 1 to 1073741824 (1 GiB)
        shared = false          # true: one memfd shared by all; false: one per grant
      ) )
  ],

  # Services: programs the broker launches confined and supervises. A
  # service receives exactly its grants (fds 3..) and is reachable only
  # through connections the broker makes for the principals in `connect`.
  # To host the scanner, install it first (services/README.md, section
  # "Installing": the program at /usr/local/lib/capbroker/scanner, its
  # database at /usr/local/share/capbroker/signatures.txt); then remove the
  # leading "# " of the lines between #-services and #-end, and of the
  # `signatures` capability above.
  #-services
  # services = [
  #   ( name = "scanner",
  #     command = [ "/usr/local/lib/capbroker/scanner" ],  # absolute program path, then arguments
  #     environment = [ "LANG=C.UTF-8" ],  # NAME=VALUE; nothing else is inherited
  #     grants = [ "signatures" ],     # capabilities it receives at start (fds 3..); the
  #                                    # scanner reads the one named "signatures"
  #     connect = [ "ops" ],           # principals and services that may connect to it
  #     acceptsFds = true,             # its clients may send it fds (the scanner takes the
  #                                    # file to scan as one); left out (false), the kernel
  #                                    # refuses fds sent to it (sendmsg fails: EPERM)
  #     activation = onDemand,         # onDemand (first connection) or atStart
  #     restart = onFailure,           # onFailure, never or always
  #     restartLimit = 5,              # restarts in a row before it is marked failed
  #     restartDelayMs = 100,          # first delay before a restart (at most 30000);
  #                                    # doubles per restart in a row, to 30 s
  #     startTimeoutMs = 10000,        # from launch to readiness
  #     # user = 65534,                # uid outside its sandbox; left out: nobody (65534)
  #     # group = 65534,               # for a root broker, else the broker's own uid and
  #                                    # gid (a broker that is not root can use only those)
  #     readiness = notify,            # notify (the service says so) or exec (once started)
  #     limits = (                     # each shown with what 0 (or leaving it out) gives
  #       # memoryMax = 268435456,     # cgroup memory.max, bytes; pidsMax: cgroup pids.max.
  #       # pidsMax = 64,              # Only for a broker run with --cgroup DIR, a delegated
  #                                    # cgroup v2 directory: any other refuses the policy
  #       openFiles = 0,               # RLIMIT_NOFILE, soft and hard; 0: 1024 (the broker's
  #                                    # hard limit if lower), never the broker's own
  #       # addressSpace = 1073741824, # RLIMIT_AS, bytes; 0: the broker's own. Memory is
  #                                    # bounded only by this and memoryMax: with neither,
  #                                    # a service may take all the memory the broker may
  #       processes = 0,               # RLIMIT_NPROC, threads too, per uid in its user
  #                                    # namespace; 0: 512 (the broker's hard limit if lower)
  #                                    # with privateUsers and no pidsMax, else the
  #                                    # broker's own
  #       cpuSeconds = 0               # RLIMIT_CPU, seconds; 0: the broker's own
  #     ),
  #     # Every protection is `required` unless set to bestEffort (used when
  #     # the kernel allows it, else logged) or off.
  #     sandbox = (
  #       privateUsers = required,     # user namespace
  #       protectSystem = required,    # minimal read-only root, private /tmp, own /proc
  #       privatePids = required,      # pid namespace
  #       privateIpc = required,       # ipc namespace
  #       protectHostname = required,  # uts namespace
  #       privateNetwork = required,   # network namespace without interfaces
  #       noNewPrivileges = required,  # no setuid, no file capabilities
  #       dropCapabilities = required, # empty bounding and ambient sets
  #       systemCallFilter = required, # seccomp: no ptrace, mount, bpf, namespaces, ...
  #       landlock = required,         # no files beyond the program, system dirs, grants
  #       restrictAddressFamilies = [ unix ]  # socket families it may use: unix, inet,
  #                                           # inet6, netlink (enforced by
  #                                           # systemCallFilter: none without it)
  #     ) ) ],
  #-end

  # Principals: who gets what. A principal matches a client when every
  # criterion it gives holds; give at least one. The grants of all matching
  # principals add up.
  principals = [
    ( name = "ops",
      match = (
        # gid = 1000,           # the client's primary gid (0 to 4294967294)
        # exe = "/usr/bin/cat", # and the client runs this program (only with uid or gid:
        #                       # alone, any user could borrow it by exec)
        uid = 1000              # the client's uid (0 to 4294967294)
      ),
      grants = [ "motd", "spool", "scratch" ] ),

    ( name = "everyone",
      match = ( anyUser = true ),  # every local user; cannot be combined with others
      grants = [ "motd" ] )
  ]
)
)POLICY";

}  // namespace

absl::string_view StarterPolicyText() {
  return absl::string_view(kStarterPolicy, sizeof(kStarterPolicy) - 1);
}

}  // namespace capbroker

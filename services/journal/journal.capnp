# The journal protocol: a hosted service that appends records to a log it
# can only append to.
#
# Transport: a connection the broker made (`capctl connect journal`). One
# Request per datagram, answered by one Reply, in order. Requests carry no
# fds. A request the service cannot read closes the connection; anything
# else gets a Reply. `appended` means the record is on disk (fdatasync).
#
# Each record is one JSON line (record.h) that carries who sent it as the
# broker established it (principal, uid, gid, pid), never what the client
# claims, with a sequence number and the time.
#
# Compatibility: fields and union members are only ever added.
@0xe5f15fec6b87f46b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("capbroker::journal::schema");

struct Request {
  union {
    append @0 :Text;  # one record: UTF-8, at most 4096 bytes
    info @1 :Void;
  }
}

struct Reply {
  union {
    appended @0 :Appended;
    error @1 :Error;
    info @2 :Info;
  }
}

struct Appended {
  seq @0 :UInt64;  # the record's sequence number: 1, 2, ... within a run
  run @1 :UInt64;  # the run: the journal's start time in ns since the epoch
}

struct Info {
  run @0 :UInt64;
  records @1 :UInt64;  # appended in this run
}

struct Error {
  code @0 :UInt32;   # an absl::StatusCode (sdk/service/error_reply.h)
  message @1 :Text;
}

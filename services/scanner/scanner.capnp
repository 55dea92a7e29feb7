# The scanner protocol: a hosted service that scans files for signatures,
# in the manner of clamd, without any filesystem access of its own: the
# client hands it the file as an fd.
#
# Transport: a connection the broker made (`capctl connect scanner`). One
# Request per datagram, answered by one Reply, in order. A request the
# service cannot read closes the connection; anything else gets a Reply.
#
# Compatibility: fields and union members are only ever added.
@0xefdb4b66b0f0d0f5;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("capbroker::scanner::schema");

struct Request {
  union {
    scan @0 :Void;  # the file is the one fd of the datagram (fds[0]); it must
                    # be a regular file open for reading
    info @1 :Void;  # no fds
  }
}

struct Reply {
  union {
    clean @0 :Void;
    infected @1 :Text;  # the name of the signature found
    error @2 :Error;    # see sdk/service/error_reply.h for `code`
    info @3 :Info;
  }
  bytesScanned @4 :UInt64;  # for clean and infected: how far the scan read
}

struct Info {
  signatures @0 :UInt32;    # in the loaded database
  maxFileBytes @1 :UInt64;  # larger files are refused (resourceExhausted)
}

struct Error {
  code @0 :UInt32;   # an absl::StatusCode
  message @1 :Text;
}

# The kvstore protocol: a hosted service that keeps a persistent key-value
# store in a directory capability.
#
# Transport: a connection the broker made (`capctl connect kvstore`). One
# Request per datagram, answered by one Reply, in order. Requests carry no
# fds. A request the service cannot read closes the connection; anything
# else gets a Reply. A `done` to a put or delete means the change is on
# disk (fsynced), and survives a crash of the service or the machine.
#
# Limits (store.h): keys 1 to 120 bytes, any bytes; values at most 32 KiB;
# at most 100000 keys. Beyond them: error resourceExhausted.
#
# Compatibility: fields and union members are only ever added.
@0xc5cef8b643f2d8c3;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("capbroker::kvstore::schema");

struct Request {
  union {
    put @0 :Put;
    get @1 :Data;      # the key
    delete @2 :Data;   # the key
    list @3 :ListRequest;
  }
}

struct Put {
  key @0 :Data;
  value @1 :Data;
}

struct ListRequest {
  startAfter @0 :Data;  # only keys after this one (bytewise order); empty: all
}

struct Reply {
  union {
    done @0 :Void;     # put, delete
    value @1 :Data;    # get
    keys @2 :Keys;     # list
    error @3 :Error;   # notFound for get or delete of a missing key
  }
}

struct Keys {
  keys @0 :List(Data);  # in bytewise order
  more @1 :Bool;        # the reply is full: ask again after the last key
}

struct Error {
  code @0 :UInt32;   # an absl::StatusCode (sdk/service/error_reply.h)
  message @1 :Text;
}

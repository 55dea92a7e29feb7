# A service protocol of the usual shape (error_reply.h), for
# call_service_test only.
@0xffe957579bbf4288;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("capbroker::call_service_test");

struct Request {
  text @0 :Text;
}

struct Reply {
  union {
    done @0 :Void;
    error @1 :Error;
  }
}

struct Error {
  code @0 :UInt32;
  message @1 :Text;
}

// FdOutput: the buffer behind capctl's stdout, writing to an fd with
// write(2) so that a failed write is never lost (capctl must not exit 0
// after `capctl policy init > policy.capnp` ran out of disk).
//
//   FdOutput buffer(STDOUT_FILENO);
//   std::ostream out(&buffer);
//   out << text;
//   out.flush();   // on failure: badbit, with errno saying why
//
// glibc's stdio (behind std::cout) drops what it could not write and keeps
// no error a later fflush would report: a failure in the middle of a long
// output left only "the stream failed", with errno long gone. FdOutput
// keeps what it could not write, so a retried flush (clear() the stream,
// then flush()) writes it again and fails again with errno set, or
// succeeds when the cause is gone. Not thread-safe.
#ifndef CAPBROKER_SDK_CAPCTL_FD_OUTPUT_H_
#define CAPBROKER_SDK_CAPCTL_FD_OUTPUT_H_

#include <cstddef>
#include <streambuf>

namespace capbroker {

class FdOutput : public std::streambuf {
 public:
  // Writes to `fd`, borrowed: it must outlive this buffer. Nothing is
  // written when this buffer is destroyed: flush the stream first.
  explicit FdOutput(int fd);

  FdOutput(const FdOutput&) = delete;
  FdOutput& operator=(const FdOutput&) = delete;

 protected:
  int_type overflow(int_type c) override;
  int sync() override;

 private:
  // Writes everything buffered. On a failure, keeps what was not written
  // at the start of the buffer and returns -1 with errno set; 0 when all
  // of it was written.
  int WriteBuffered();

  static constexpr size_t kBufferBytes = 4096;

  int fd_;
  char buffer_[kBufferBytes];
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CAPCTL_FD_OUTPUT_H_

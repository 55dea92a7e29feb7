#include "sdk/capctl/fd_output.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sdk/base/syscall.h"

namespace capbroker {

FdOutput::FdOutput(int fd) : fd_(fd) { setp(buffer_, buffer_ + kBufferBytes); }

FdOutput::int_type FdOutput::overflow(int_type c) {
  if (WriteBuffered() != 0) return traits_type::eof();
  if (!traits_type::eq_int_type(c, traits_type::eof())) {
    *pptr() = traits_type::to_char_type(c);
    pbump(1);
  }
  return traits_type::not_eof(c);
}

int FdOutput::sync() { return WriteBuffered(); }

int FdOutput::WriteBuffered() {
  char* next = pbase();
  char* const end = pptr();
  while (next < end) {
    const ssize_t n = RetryEintr([&] { return write(fd_, next, end - next); });
    if (n <= 0) {
      const int saved = n < 0 ? errno : EIO;  // 0 would loop forever
      const size_t left = end - next;
      std::memmove(buffer_, next, left);
      setp(buffer_, buffer_ + kBufferBytes);
      pbump(static_cast<int>(left));
      errno = saved;
      return -1;
    }
    next += n;
  }
  setp(buffer_, buffer_ + kBufferBytes);
  return 0;
}

}  // namespace capbroker

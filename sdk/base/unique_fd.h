// UniqueFd: the single owner of a file descriptor.
//
// Every fd capbroker holds is owned by exactly one UniqueFd; a plain `int`
// parameter only borrows. Moving transfers ownership; destruction closes.
// A failed close() is logged to stderr, never retried: on Linux the fd is
// released even when close() reports an error, and retrying could close an
// fd another thread has just been given.
#ifndef CAPBROKER_SDK_BASE_UNIQUE_FD_H_
#define CAPBROKER_SDK_BASE_UNIQUE_FD_H_

namespace capbroker {

class UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of `fd` (-1 for none).
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  // The fd, still owned by this object; -1 when empty.
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing; the caller now owns the result.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Closes the owned fd, if any, and takes ownership of `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_UNIQUE_FD_H_

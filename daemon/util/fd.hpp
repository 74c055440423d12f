#pragma once

#include <unistd.h>

#include <utility>

namespace cim::util {

// A file descriptor closed when its owner goes; movable, not copyable.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) { }
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) { }
    Fd& operator=(Fd&& other) noexcept
    {
        Fd(std::move(other)).swap(*this);
        return *this;
    }
    ~Fd()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void swap(Fd& other) noexcept { std::swap(fd_, other.fd_); }

private:
    int fd_ = -1;
};

}  // namespace cim::util

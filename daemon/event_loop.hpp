#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <systemd/sd-event.h>

namespace cim {

class EventLoop;

// An owned sd-event source; disabling and unreferencing on destruction.
class EventSource {
public:
    EventSource() = default;
    EventSource(EventSource&& other) noexcept : source_(std::exchange(other.source_, nullptr)) { }
    EventSource& operator=(EventSource&& other) noexcept;
    ~EventSource();

    explicit operator bool() const { return source_ != nullptr; }

private:
    friend class EventLoop;
    friend class Timer;
    friend class ExternalIo;
    explicit EventSource(sd_event_source* source) : source_(source) { }

    sd_event_source* source_ = nullptr;
};

// A periodic timer made by EventLoop::every.
class Timer {
public:
    Timer() = default;

    // Re-arms the timer: the next tick is `interval` from now (an empty
    // Timer has nothing to re-arm).
    void set_interval(std::chrono::microseconds interval);

    explicit operator bool() const { return static_cast<bool>(source_); }

private:
    friend class EventLoop;
    struct Periodic {
        std::uint64_t period_usec;
        std::function<void()> callback;
    };
    Timer(EventSource source, Periodic* periodic) : source_(std::move(source)), periodic_(periodic) { }

    EventSource source_;
    Periodic* periodic_ = nullptr;  // owned by the source
};

// What a library that does its own I/O on one file descriptor waits for next:
// poll events (EPOLLIN...) and a CLOCK_MONOTONIC deadline in microseconds
// (UINT64_MAX for none).
struct IoWants {
    std::uint32_t events;
    std::uint64_t deadline_usec;
};

// Such a library driven by the loop, made by EventLoop::drive.
class ExternalIo {
public:
    ExternalIo() = default;

    explicit operator bool() const { return static_cast<bool>(io_); }

private:
    friend class EventLoop;
    struct Driven {
        std::function<IoWants()> wants;
        std::function<void()> process;
        sd_event_source* timer = nullptr;  // owned by timer_
    };
    ExternalIo(EventSource io, EventSource timer) : io_(std::move(io)), timer_(std::move(timer)) { }

    EventSource io_;
    EventSource timer_;
};

// The daemon's one event loop: signals, timers and file descriptors are
// sd-event sources; other threads reach it only through `post`.
class EventLoop {
public:
    using Callback = std::function<void()>;

    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Blocks `signal` for the process and delivers it here. Call before any
    // thread is started so every thread inherits the blocked mask.
    EventSource on_signal(int signal, Callback callback);

    // Calls `callback` every `interval` (CLOCK_MONOTONIC) until the timer is
    // dropped.
    Timer every(std::chrono::microseconds interval, Callback callback);

    // Calls `callback` once after `delay`.
    EventSource after(std::chrono::microseconds delay, Callback callback);

    // Calls `callback(revents)` when `fd` is ready for `events` (EPOLLIN...).
    EventSource on_fd(int fd, std::uint32_t events, std::function<void(std::uint32_t)> callback);

    // Drives a library that does its own I/O on `fd`: `wants` is asked
    // before every poll, `process` runs when the fd is ready or the deadline
    // has come.
    ExternalIo drive(int fd, std::function<IoWants()> wants, Callback process);

    // Thread-safe: runs `callback` on the loop thread, in posting order.
    void post(Callback callback);

    int run();  // until exit(); returns the exit code
    // Runs the loop for `time` (or until exit()), then returns: lets a test
    // step it and look in between.
    void run_for(std::chrono::microseconds time);
    void exit(int code);

private:
    void drain_posted();

    sd_event* event_ = nullptr;
    int wake_fd_ = -1;
    EventSource wake_source_;
    std::mutex posted_mutex_;
    std::vector<Callback> posted_;
};

}  // namespace cim

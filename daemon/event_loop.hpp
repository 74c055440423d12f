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

// An owned sd-event source; disabling and unreferencing on destruction.
class EventSource {
public:
    EventSource() = default;
    explicit EventSource(sd_event_source* source) : source_(source) { }
    EventSource(EventSource&& other) noexcept : source_(std::exchange(other.source_, nullptr)) { }
    EventSource& operator=(EventSource&& other) noexcept;
    ~EventSource();

    sd_event_source* get() const { return source_; }
    explicit operator bool() const { return source_ != nullptr; }

private:
    sd_event_source* source_ = nullptr;
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

    sd_event* get() const { return event_; }

    // Blocks `signal` for the process and delivers it here. Call before any
    // thread is started so every thread inherits the blocked mask.
    EventSource on_signal(int signal, Callback callback);

    // Calls `callback` every `interval` (CLOCK_MONOTONIC) until the source is
    // dropped; `set_interval` re-arms an existing timer.
    EventSource every(std::chrono::microseconds interval, Callback callback);
    static void set_interval(const EventSource& timer, std::chrono::microseconds interval);

    // Calls `callback` once after `delay`.
    EventSource after(std::chrono::microseconds delay, Callback callback);

    // Calls `callback(revents)` when `fd` is ready for `events` (EPOLLIN...).
    EventSource on_fd(int fd, std::uint32_t events, std::function<void(std::uint32_t)> callback);

    // Thread-safe: runs `callback` on the loop thread, in posting order.
    void post(Callback callback);

    int run();  // until exit(); returns the exit code
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

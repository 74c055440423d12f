#include "event_loop.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

namespace cim {

namespace {

// The edge for what a callback throws (a thread that cannot be made, a
// bug): logged once, and the loop ends with 1, so that the daemon exits
// the usual way (events synced, NATS closed) and systemd restarts it,
// instead of std::terminate inside sd-event.
template <typename F> int guarded(sd_event_source* source, F&& call) noexcept
{
    try {
        call();
    } catch (const std::exception& e) {
        spdlog::critical("fatal: {}", e.what());
        sd_event_exit(sd_event_source_get_event(source), 1);
    }
    return 0;
}

void check(int r, const char* what)
{
    if (r < 0)
        throw std::runtime_error(std::string(what) + ": " + std::strerror(-r));
}

// Callbacks live in the source's userdata and are freed with the source.
template <typename F> F* own(sd_event_source* source, F callback)
{
    auto* heap = new F(std::move(callback));
    sd_event_source_set_destroy_callback(source, [](void* p) { delete static_cast<F*>(p); });
    sd_event_source_set_userdata(source, heap);
    return heap;
}

std::uint64_t now_usec(sd_event* event)
{
    std::uint64_t now = 0;
    check(sd_event_now(event, CLOCK_MONOTONIC, &now), "sd_event_now");
    return now;
}

}  // namespace

EventSource& EventSource::operator=(EventSource&& other) noexcept
{
    if (this != &other) {
        EventSource dropped(std::exchange(source_, std::exchange(other.source_, nullptr)));
    }
    return *this;
}

EventSource::~EventSource()
{
    if (source_) {
        sd_event_source_set_enabled(source_, SD_EVENT_OFF);
        sd_event_source_unref(source_);
    }
}

EventLoop::EventLoop()
{
    check(sd_event_new(&event_), "sd_event_new");
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0)
        throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    wake_source_ = on_fd(wake_fd_, EPOLLIN, [this](std::uint32_t) {
        std::uint64_t count = 0;
        [[maybe_unused]] ssize_t n = read(wake_fd_, &count, sizeof count);
        drain_posted();
    });
}

EventLoop::~EventLoop()
{
    wake_source_ = EventSource();
    close(wake_fd_);
    sd_event_unref(event_);
}

EventSource EventLoop::on_signal(int signal, Callback callback)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, signal);
    check(-pthread_sigmask(SIG_BLOCK, &mask, nullptr), "pthread_sigmask");
    sd_event_source* source = nullptr;
    check(sd_event_add_signal(
              event_, &source, signal,
              [](sd_event_source* s, const signalfd_siginfo*, void* userdata) {
                  return guarded(s, *static_cast<Callback*>(userdata));
              },
              nullptr),
        "sd_event_add_signal");
    own(source, std::move(callback));
    return EventSource(source);
}

namespace {

// Allowed lateness: small against the period (so beats stay regular) but not
// zero, so sd-event can coalesce wake-ups.
std::uint64_t accuracy_for(std::uint64_t period_usec)
{
    return std::max<std::uint64_t>(period_usec / 50, 1000);
}

}  // namespace

Timer EventLoop::every(std::chrono::microseconds interval, Callback callback)
{
    const auto period = static_cast<std::uint64_t>(interval.count());
    sd_event_source* source = nullptr;
    check(sd_event_add_time_relative(
              event_, &source, CLOCK_MONOTONIC, period, accuracy_for(period),
              [](sd_event_source* s, std::uint64_t usec, void* userdata) {
                  auto* periodic = static_cast<Timer::Periodic*>(userdata);
                  // Re-arm from the scheduled time, so the rate does not drift
                  // with the callback's run time; after a stall, from now, so
                  // the missed ticks do not all fire at once.
                  std::uint64_t now = 0;
                  sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now);
                  sd_event_source_set_time(s, std::max(usec + periodic->period_usec, now));
                  sd_event_source_set_enabled(s, SD_EVENT_ON);
                  return guarded(s, periodic->callback);
              },
              nullptr),
        "sd_event_add_time_relative");
    return Timer(EventSource(source), own(source, Timer::Periodic{period, std::move(callback)}));
}

void Timer::set_interval(std::chrono::microseconds interval)
{
    if (!source_)
        return;
    sd_event_source* s = source_.source_;
    periodic_->period_usec = static_cast<std::uint64_t>(interval.count());
    sd_event_source_set_time_accuracy(s, accuracy_for(periodic_->period_usec));
    sd_event_source_set_time(s, now_usec(sd_event_source_get_event(s)) + periodic_->period_usec);
    sd_event_source_set_enabled(s, SD_EVENT_ON);
}

EventSource EventLoop::after(std::chrono::microseconds delay, Callback callback)
{
    sd_event_source* source = nullptr;
    check(sd_event_add_time_relative(
              event_, &source, CLOCK_MONOTONIC, static_cast<std::uint64_t>(delay.count()), 1000,
              [](sd_event_source* s, std::uint64_t, void* userdata) {
                  return guarded(s, *static_cast<Callback*>(userdata));
              },
              nullptr),
        "sd_event_add_time_relative");
    own(source, std::move(callback));
    return EventSource(source);
}

EventSource EventLoop::on_fd(int fd, std::uint32_t events, std::function<void(std::uint32_t)> callback)
{
    sd_event_source* source = nullptr;
    check(sd_event_add_io(
              event_, &source, fd, events,
              [](sd_event_source* s, int, std::uint32_t revents, void* userdata) {
                  return guarded(s, [&] { (*static_cast<std::function<void(std::uint32_t)>*>(userdata))(revents); });
              },
              nullptr),
        "sd_event_add_io");
    own(source, std::move(callback));
    return EventSource(source);
}

ExternalIo EventLoop::drive(int fd, std::function<IoWants()> wants, Callback process)
{
    // Both sources share the callbacks, so that either may drop the pair
    // from within its own dispatch (sd-event frees a dispatching source only
    // after its callback returns).
    using Shared = std::shared_ptr<ExternalIo::Driven>;
    auto driven = std::make_shared<ExternalIo::Driven>(ExternalIo::Driven{std::move(wants), std::move(process)});
    sd_event_source* io = nullptr;
    check(sd_event_add_io(
              event_, &io, fd, 0,
              [](sd_event_source* s, int, std::uint32_t, void* userdata) {
                  return guarded(s, (*static_cast<Shared*>(userdata))->process);
              },
              nullptr),
        "sd_event_add_io");
    EventSource io_source(io);
    own(io, driven);
    sd_event_source* timer = nullptr;
    check(sd_event_add_time(
              event_, &timer, CLOCK_MONOTONIC, UINT64_MAX, 0,
              [](sd_event_source* s, std::uint64_t, void* userdata) {
                  return guarded(s, (*static_cast<Shared*>(userdata))->process);
              },
              nullptr),
        "sd_event_add_time");
    EventSource timer_source(timer);
    own(timer, driven);
    driven->timer = timer;
    // Before each poll: what the library waits for now (it may have output
    // queued, or a reply due by a deadline).
    check(sd_event_source_set_prepare(io,
              [](sd_event_source* s, void* userdata) {
                  const auto& driven = *static_cast<Shared*>(userdata);
                  const IoWants wants = driven->wants();
                  sd_event_source_set_io_events(s, wants.events);
                  if (wants.deadline_usec == UINT64_MAX) {
                      sd_event_source_set_enabled(driven->timer, SD_EVENT_OFF);
                  } else {
                      sd_event_source_set_time(driven->timer, wants.deadline_usec);
                      sd_event_source_set_enabled(driven->timer, SD_EVENT_ONESHOT);
                  }
                  return 0;
              }),
        "sd_event_source_set_prepare");
    return ExternalIo(std::move(io_source), std::move(timer_source));
}

void EventLoop::post(Callback callback)
{
    {
        std::lock_guard lock(posted_mutex_);
        posted_.push_back(std::move(callback));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

void EventLoop::drain_posted()
{
    std::vector<Callback> batch;
    {
        std::lock_guard lock(posted_mutex_);
        batch.swap(posted_);
    }
    for (auto& callback : batch)
        callback();
}

int EventLoop::run()
{
    const int r = sd_event_loop(event_);
    check(r, "sd_event_loop");
    return r;
}

void EventLoop::run_for(std::chrono::microseconds time)
{
    const std::uint64_t deadline = now_usec(event_) + static_cast<std::uint64_t>(time.count());
    for (std::uint64_t now = now_usec(event_); now < deadline && sd_event_get_state(event_) != SD_EVENT_FINISHED;
         now = now_usec(event_))
        check(sd_event_run(event_, deadline - now), "sd_event_run");
}

void EventLoop::exit(int code)
{
    sd_event_exit(event_, code);
}

}  // namespace cim

#include "events/syncer.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

#include "util/thread.hpp"

namespace cim::events {

Syncer::Syncer(EventLoop& loop, Done done)
    : done_(std::move(done)), finished_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
    if (!finished_fd_)
        throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    finished_source_ = loop.on_fd(finished_fd_.get(), EPOLLIN, [this](std::uint32_t) {
        std::uint64_t count = 0;
        [[maybe_unused]] const ssize_t n = read(finished_fd_.get(), &count, sizeof count);
        for (const auto& [what, error] : take_finished())
            done_(what, error);
    });
    thread_ = util::start_thread<std::jthread>(
        "the event spool's sync thread", [this](std::stop_token stop) { run(std::move(stop)); });
}

void Syncer::request(Spool::Unsynced what)
{
    {
        std::lock_guard lock(mutex_);
        requested_ = std::move(what);
    }
    wanted_.notify_one();
}

Syncer::Finished Syncer::stop(std::chrono::milliseconds patience)
{
    if (thread_.joinable()) {
        thread_.request_stop();
        std::unique_lock lock(mutex_);
        if (!ending_.wait_for(lock, patience, [this] { return ended_; })) {
            spdlog::warn("the exit waits for the disk: the event spool's fdatasync has not returned after {} ms",
                patience.count());
            ending_.wait(lock, [this] { return ended_; });
        }
        lock.unlock();
        thread_.join();
    }
    return take_finished();
}

void Syncer::run(std::stop_token stop)
{
    std::unique_lock lock(mutex_);
    // Once stop is requested, wait() returns whether a request is left: it is done first.
    while (wanted_.wait(lock, stop, [this] { return requested_.has_value(); })) {
        Spool::Unsynced what = std::move(*requested_);
        requested_.reset();
        lock.unlock();
        const int error = fdatasync(what.file->get()) == 0 ? 0 : errno;
        lock.lock();
        finished_.emplace_back(std::move(what), error);
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = write(finished_fd_.get(), &one, sizeof one);
    }
    ended_ = true;
    ending_.notify_all();
}

Syncer::Finished Syncer::take_finished()
{
    std::lock_guard lock(mutex_);
    return std::exchange(finished_, {});
}

}  // namespace cim::events

#include "events/syncer.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cim::events {

Syncer::Syncer(EventLoop& loop, Done done)
    : done_(std::move(done)), finished_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
    if (!finished_fd_)
        throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    finished_source_ = loop.on_fd(finished_fd_.get(), EPOLLIN, [this](std::uint32_t) {
        std::uint64_t count = 0;
        [[maybe_unused]] const ssize_t n = read(finished_fd_.get(), &count, sizeof count);
        report();
    });
}

void Syncer::request(Spool::Unsynced what)
{
    {
        std::lock_guard lock(mutex_);
        requested_ = std::move(what);
    }
    if (!thread_.joinable())
        thread_ = std::jthread([this](std::stop_token stop) { run(std::move(stop)); });
    else
        wanted_.notify_one();
}

void Syncer::stop()
{
    if (thread_.joinable()) {
        thread_.request_stop();
        thread_.join();
    }
}

void Syncer::run(std::stop_token stop)
{
    std::unique_lock lock(mutex_);
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
}

void Syncer::report()
{
    std::vector<std::pair<Spool::Unsynced, int>> finished;
    {
        std::lock_guard lock(mutex_);
        finished.swap(finished_);
    }
    for (const auto& [what, error] : finished)
        done_(what, error);
}

}  // namespace cim::events

#include "nats/socket_loop.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "util/thread.hpp"

namespace cim::nats {

namespace {

using Clock = std::chrono::steady_clock;

// The loop whose writes this thread does itself, after what it queues (its
// Writing, or the loop's own thread after each read): nats.c's request to
// write wakes no other thread then.
thread_local const SocketLoop* writes_here = nullptr;

bool writable_now(int socket)
{
    pollfd watched{.fd = socket, .events = POLLOUT, .revents = 0};
    return poll(&watched, 1, 0) == 1;
}

int checked(int fd, const char* what)
{
    if (fd < 0)
        throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
    return fd;
}

}  // namespace

SocketLoop::SocketLoop(std::chrono::milliseconds write_deadline, AfterRead after_read)
    : write_deadline_(write_deadline), after_read_(std::move(after_read)),
      epoll_(checked(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      wake_(checked(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"))
{
    epoll_event event{.events = EPOLLIN, .data = {.fd = wake_.get()}};
    checked(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event), "epoll_ctl");
    thread_ = util::start_thread<std::jthread>(
        "the thread that reads the NATS socket", [this](const std::stop_token& stop) { run(stop); });
}

SocketLoop::~SocketLoop()
{
    {
        std::unique_lock lock(mutex_);
        detached_.wait(lock, [this] { return connection_ == nullptr; });
    }
    thread_.request_stop();
    kick();
    thread_.join();
}

natsStatus SocketLoop::use_for(natsOptions* options)
{
    return natsOptions_SetEventLoop(options, this, on_attach, on_read, on_write, on_detach);
}

void SocketLoop::kick()
{
    eventfd_write(wake_.get(), 1);
}

// nats.c calls these with the connection's lock held, from whichever thread
// connects, publishes or closes: they only change what epoll_ watches. A
// connection is attached once (the Link makes a new one after a loss).
natsStatus SocketLoop::on_attach(void** data, void* loop, natsConnection* connection, natsSock socket)
{
    auto* self = static_cast<SocketLoop*>(loop);
    *data = self;
    std::lock_guard lock(self->mutex_);
    self->connection_ = connection;
    self->socket_ = socket;
    self->reading_ = true;  // an attached socket is read at once
    self->watch();
    return NATS_OK;
}

natsStatus SocketLoop::on_read(void* data, bool add)
{
    auto* self = static_cast<SocketLoop*>(data);
    std::lock_guard lock(self->mutex_);
    self->reading_ = add;
    self->watch();
    return NATS_OK;
}

natsStatus SocketLoop::on_write(void* data, bool add)
{
    auto* self = static_cast<SocketLoop*>(data);
    std::lock_guard lock(self->mutex_);
    if (add && !self->writing_)
        self->write_moved_ = Clock::now();
    self->writing_ = add;
    if (!add || writes_here != self)
        self->watch();
    return NATS_OK;
}

natsStatus SocketLoop::on_detach(void* data)
{
    auto* self = static_cast<SocketLoop*>(data);
    std::lock_guard lock(self->mutex_);
    self->reading_ = self->writing_ = false;
    self->watch();
    self->connection_ = nullptr;
    self->socket_ = -1;
    self->detached_.notify_all();  // under the lock: the loop may be gone once it is released
    return NATS_OK;
}

void SocketLoop::watch()
{
    if (socket_ < 0)
        return;
    const std::uint32_t wanted = (reading_ ? EPOLLIN : 0u) | (writing_ ? EPOLLOUT : 0u);
    if (wanted == watched_)
        return;
    epoll_event event{.events = wanted, .data = {.fd = socket_}};
    const int operation = wanted == 0 ? EPOLL_CTL_DEL : watched_ == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    // Fails only for a socket nats.c has already closed, which left epoll_ then.
    epoll_ctl(epoll_.get(), operation, socket_, &event);
    // A write left to this loop by another thread: a socket that takes it
    // wakes the loop, one that does not must start the write deadline there.
    if ((wanted & ~watched_ & EPOLLOUT) && std::this_thread::get_id() != thread_.get_id() && !writable_now(socket_))
        kick();
    watched_ = wanted;
}

void SocketLoop::write(natsConnection* connection)
{
    bool owed = false;
    {
        std::lock_guard lock(mutex_);
        owed = writing_ && connection_ == connection;
    }
    if (owed)
        natsConnection_ProcessWriteEvent(connection);
    std::lock_guard lock(mutex_);
    watch();  // EPOLLOUT if the write could not finish, none if it did
}

SocketLoop::Writing::Writing(SocketLoop& loop, natsConnection* connection)
    : loop_(loop), connection_(connection), outer_(std::exchange(writes_here, &loop))
{
}

SocketLoop::Writing::~Writing()
{
    writes_here = outer_;
    if (std::unique_lock io(loop_.io_, std::try_to_lock); io.owns_lock()) {
        loop_.write(connection_);
        return;
    }
    // The loop's thread is reading (over TLS it may wait there for the rest
    // of a record): it writes this after, instead of this thread waiting.
    std::lock_guard lock(loop_.mutex_);
    loop_.watch();
}

void SocketLoop::give_up_stalled_write()
{
    std::lock_guard lock(mutex_);
    if (!writing_ || shut_down_ || socket_ < 0 || Clock::now() - write_moved_ < write_deadline_)
        return;
    // Attached, so still nats.c's socket (it leaves the loop before it is
    // closed). The next read finds it shut, and the connection ends.
    ::shutdown(socket_, SHUT_RDWR);
    shut_down_ = true;
}

void SocketLoop::run(const std::stop_token& stop)
{
    writes_here = this;
    while (!stop.stop_requested()) {
        int timeout_ms = -1;
        {
            std::lock_guard lock(mutex_);
            if (writing_ && !shut_down_ && socket_ >= 0) {
                const auto left = write_moved_ + write_deadline_ - Clock::now();
                timeout_ms = static_cast<int>(
                    std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(left).count()));
            }
        }
        epoll_event events[2];
        const int ready = epoll_wait(epoll_.get(), events, 2, timeout_ms);
        bool readable = false;
        bool writable = false;
        bool kicked = false;
        for (int i = 0; i < ready; ++i) {
            if (events[i].data.fd == wake_.get()) {
                eventfd_t count = 0;
                eventfd_read(wake_.get(), &count);
                kicked = true;
                continue;
            }
            readable = readable || (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR));
            writable = writable || (events[i].events & EPOLLOUT);
        }
        natsConnection* connection = nullptr;
        {
            std::lock_guard lock(mutex_);
            connection = connection_;
            if (writable)
                write_moved_ = Clock::now();
        }
        if (!connection)
            continue;
        {
            const std::lock_guard io(io_);
            if (readable)
                natsConnection_ProcessReadEvent(connection);
            if (readable || kicked)
                after_read_(connection);
            write(connection);
        }
        give_up_stalled_write();
    }
}

}  // namespace cim::nats

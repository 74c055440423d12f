#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include <nats/nats.h>

#include "util/fd.hpp"

namespace cim::nats {

// A connection's socket read and written on a thread of the daemon's own
// (nats.c's external event loop) instead of nats.c's reader thread. After
// each read `after_read` runs on that same thread, so a request can be
// parsed and answered there without nats.c's hand-off to a delivery
// thread: one thread woken per request instead of two.
//
// What another thread publishes within a Writing (the event loop's
// heartbeats and events) it writes itself, right after, unless this thread
// is reading: then this thread writes it. One read or write at a time (an
// OpenSSL connection takes no more, and nats.c reads without its lock). A
// server that stops reading is given up once a write has waited
// `write_deadline` without moving a byte: the socket is shut down, and the
// connection ends as any lost one does.
class SocketLoop {
public:
    using AfterRead = std::function<void(natsConnection*)>;

    SocketLoop(std::chrono::milliseconds write_deadline, AfterRead after_read);
    SocketLoop(const SocketLoop&) = delete;
    SocketLoop& operator=(const SocketLoop&) = delete;
    // Waits for nats.c to detach the connection it attached (after closing
    // it, maybe on a thread of its own), then ends the thread.
    ~SocketLoop();

    // Makes connections made with `options` use this loop.
    natsStatus use_for(natsOptions* options);
    // Runs `after_read` once more, for what arrived before it could be handled.
    void kick();

    // While one lives, what nats.c queues on this thread waits; it is then
    // written by this thread, or by the loop's if that one is reading.
    class Writing {
    public:
        Writing(SocketLoop& loop, natsConnection* connection);
        Writing(const Writing&) = delete;
        Writing& operator=(const Writing&) = delete;
        ~Writing();

    private:
        SocketLoop& loop_;
        natsConnection* connection_;
        const SocketLoop* outer_;
    };

private:
    static natsStatus on_attach(void** data, void* loop, natsConnection* connection, natsSock socket);
    static natsStatus on_read(void* data, bool add);
    static natsStatus on_write(void* data, bool add);
    static natsStatus on_detach(void* data);

    void run(const std::stop_token& stop);
    void watch();  // under mutex_: the socket's events as nats.c wants them
    void write(natsConnection* connection);  // under io_: what nats.c has queued, if anything
    void give_up_stalled_write();

    const std::chrono::milliseconds write_deadline_;
    const AfterRead after_read_;
    util::Fd epoll_;
    util::Fd wake_;  // eventfd: kick() and stopping

    std::mutex io_;  // held around every read and write of the socket
    std::mutex mutex_;  // guards everything below; never held while calling nats.c
    std::condition_variable detached_;
    natsConnection* connection_ = nullptr;  // while attached
    int socket_ = -1;
    bool reading_ = false;
    bool writing_ = false;  // nats.c has bytes to write
    std::uint32_t watched_ = 0;  // the socket's events in epoll_
    std::chrono::steady_clock::time_point write_moved_;  // the last time the socket took bytes
    bool shut_down_ = false;

    std::jthread thread_;  // last: starts after everything above exists
};

}  // namespace cim::nats

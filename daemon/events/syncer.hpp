#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "event_loop.hpp"
#include "events/spool.hpp"
#include "util/fd.hpp"

namespace cim::events {

// Makes the spool's writes durable on a thread of its own, so that the
// event loop never waits for the disk (heartbeats, health requests and the
// watchdog go on while a slow disk syncs), and events written while one
// fdatasync runs share the next one. The thread starts with the Syncer
// (or the constructor throws, saying so) and blocks every signal. Loop
// thread only.
class Syncer {
public:
    // `done(what, error)` runs on the loop thread after each fdatasync.
    using Done = std::function<void(const Spool::Unsynced& what, int error)>;

    Syncer(EventLoop& loop, Done done);
    Syncer(const Syncer&) = delete;
    Syncer& operator=(const Syncer&) = delete;
    ~Syncer() { stop(); }

    // Syncs `what` once the thread is free; a request not yet taken is
    // replaced, since a later one covers everything an earlier one does.
    void request(Spool::Unsynced what);

    // One fdatasync done: `what`, and 0 or the errno.
    using Finished = std::vector<std::pair<Spool::Unsynced, int>>;

    // Does the request not yet taken, if any, and stops the thread; returns
    // what was not reported (for Spool::synced; nothing goes to `done`).
    // Waits for the disk however long it takes, and says so in the journal
    // after `patience`, so that a stop held by a hung disk is explained.
    Finished stop(std::chrono::milliseconds patience = std::chrono::seconds(1));

private:
    void run(std::stop_token stop);
    Finished take_finished();

    Done done_;
    util::Fd finished_fd_;  // an eventfd: the thread has finished one
    EventSource finished_source_;
    std::mutex mutex_;
    std::condition_variable_any wanted_;
    std::optional<Spool::Unsynced> requested_;
    Finished finished_;
    bool ended_ = false;  // run() has returned
    std::condition_variable ending_;
    std::jthread thread_;
};

}  // namespace cim::events

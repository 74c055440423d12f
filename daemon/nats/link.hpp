#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nats/nats.h>

#include "config/config.hpp"
#include "event_loop.hpp"
#include "nats/auth.hpp"
#include "nats/service.hpp"

namespace cim::nats {

using Headers = std::vector<std::pair<std::string, std::string>>;

// One NATS connection and its subscriptions, kept alive until stop(): nats.c
// reconnects on its own, and if it ever gives the connection up (closed),
// a supervisor thread builds a new one after a jittered pause. Blocking
// nats.c calls (connect, flush, drain) happen on that thread, never on the
// event loop; everything the daemon must know is posted to the loop.
//
// The supervisor thread owns the Link until nats.c has made its last
// callback into it, so dropping a Link (a reload replacing it) never waits
// and never leaves nats.c pointing at freed memory.
class Link : public std::enable_shared_from_this<Link> {
public:
    struct Handlers {
        // On the loop thread.
        std::function<void(const std::string& url)> connected;  // subscriptions confirmed by the server
        std::function<void(const std::string& reason)> disconnected;
        std::function<void(const std::string& url)> reconnected;
        std::function<void(const std::string& error)> error;  // the link goes on (and retries)
        std::function<void()> stopped;  // after stop(): drained and closed
        // On a nats.c delivery thread: the health reply. Must be thread-safe,
        // and callable until wait_for_all_stopped() returns true.
        std::function<std::string()> health;
    };

    static std::shared_ptr<Link> start(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers);
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;

    // False when there is no connection to hand the message to.
    bool publish(const std::string& subject, const std::string& payload, const Headers& headers = {});

    // Drains (bounded by `timeout`), closes, then calls `stopped`.
    void stop(std::chrono::milliseconds timeout);

    // Waits up to `bound` until every Link's thread has finished, i.e. nats.c
    // will call none of their handlers any more. False on timeout (a connect
    // attempt to a silent server can take a while).
    static bool wait_for_all_stopped(std::chrono::milliseconds bound);

private:
    struct Route;
    class Attempts;

    // Runs `work` under the mutex of the Link whose current connection
    // attempt `key` names; a late callback of an attempt that is over finds none.
    template <typename Work> static void with_current(void* key, Work work);

    Link(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers);

    void supervise();
    std::string run_connection(bool& served);  // one connection, connect to close; why it ended
    natsStatus connect(natsConnection** connection, void* attempt);
    natsStatus subscribe(natsConnection* connection);
    void serve(natsConnection* connection);  // until closed or stop()
    void on_message(const Route& route, natsConnection* connection, natsMsg* message);
    void post(std::function<void(Link&)> work);
    bool stopping();

    EventLoop& loop_;
    config::NatsConfig nats_;
    std::string health_subject_;
    std::string fleet_health_subject_;
    Auth auth_;
    Handlers handlers_;
    Service service_;
    std::vector<std::unique_ptr<Route>> routes_;

    std::mutex mutex_;  // guards everything below
    std::condition_variable changed_;
    natsConnection* connection_ = nullptr;
    void* attempt_ = nullptr;  // the current connection's key for its callbacks
    std::vector<natsSubscription*> subscriptions_;
    std::size_t live_subscriptions_ = 0;  // until nats.c reports each one complete
    bool connected_ = false;
    bool closed_ = false;
    std::string close_reason_;
    bool stop_ = false;
    std::chrono::milliseconds drain_timeout_{0};
};

}  // namespace cim::nats

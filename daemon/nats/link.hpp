#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nats/nats.h>

#include "config/config.hpp"
#include "event_loop.hpp"
#include "nats/auth.hpp"
#include "nats/service.hpp"

namespace cim::nats {

using Headers = std::vector<std::pair<std::string, std::string>>;

// One NATS connection and its subscriptions, kept alive forever: nats.c
// reconnects on its own, and if it ever gives the connection up (closed),
// a supervisor thread builds a new one after a jittered pause. Blocking
// nats.c calls (connect, flush, drain) happen on that thread; everything the
// daemon must know is posted to the event loop.
class Link : public std::enable_shared_from_this<Link> {
public:
    struct Handlers {
        // On the loop thread.
        std::function<void(const std::string& url)> connected;  // subscriptions confirmed by the server
        std::function<void(const std::string& reason)> disconnected;
        std::function<void(const std::string& url)> reconnected;
        std::function<void(const std::string& error)> error;  // asynchronous errors; the link goes on
        std::function<void()> stopped;  // after stop(): drained and closed
        // On a nats.c delivery thread: the health reply. Must be thread-safe.
        std::function<std::string()> health;
    };

    static std::shared_ptr<Link> start(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers);
    ~Link();
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;

    // False when there is no connection to hand the message to.
    bool publish(const std::string& subject, const std::string& payload, const Headers& headers = {});

    // Drains (bounded by `timeout`), closes, then calls `stopped`.
    void stop(std::chrono::milliseconds timeout);

    Service& service() { return service_; }

private:
    struct Route;

    Link(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers);

    void supervise();
    natsStatus connect(natsConnection** connection);
    natsStatus subscribe(natsConnection* connection);
    void serve(natsConnection* connection);  // until closed or stop()
    void on_message(const Route& route, natsConnection* connection, natsMsg* message);
    void post(std::function<void(Link&)> work);
    static std::string last_error(natsConnection* connection);  // empty when nats.c has none
    static std::string connected_url(natsConnection* connection);

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
    std::vector<natsSubscription*> subscriptions_;
    bool connected_ = false;
    bool closed_ = false;
    std::string close_reason_;
    bool stop_ = false;
    std::chrono::milliseconds drain_timeout_{0};

    std::thread supervisor_;
};

}  // namespace cim::nats

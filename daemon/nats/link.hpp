#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nats/nats.h>

#include "config/config.hpp"
#include "event_loop.hpp"
#include "nats/auth.hpp"
#include "nats/connection.hpp"
#include "nats/service.hpp"
#include "nats/socket_loop.hpp"

namespace cim::nats {

// One NATS connection and its subscriptions, kept alive until stop(): when
// it is lost, a supervisor thread builds a new one after `reconnect.wait`
// plus jitter (nats.c does not reconnect it itself: see connect()).
// Blocking nats.c calls (connect, flush, drain) happen on that thread, never
// on the event loop; everything the daemon must know is posted to the loop.
// The socket is read on a thread of the Link's (SocketLoop), which answers
// health requests itself; other messages go to nats.c's delivery thread.
//
// The supervisor thread owns the Link until nats.c has made its last
// callback into it, so dropping a Link (a reload replacing it) never waits
// and never leaves nats.c pointing at freed memory.
class Link final : public Connection, public std::enable_shared_from_this<Link> {
public:
    static std::shared_ptr<Link> start(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers);
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;

    Published publish(const Message& message) override;
    Published request(const Message& message, std::uint64_t token) override;
    void stop(std::chrono::milliseconds timeout) override;

    // Waits up to `bound` until every Link's thread has finished, i.e. nats.c
    // will call none of their handlers any more. False on timeout (a connect
    // attempt to a silent server can take a while).
    static bool wait_for_all_stopped(std::chrono::milliseconds bound);

private:
    // A subscription and what answers its requests.
    struct Route {
        enum class Kind { health, service, answer } kind;
        std::string subject;
        std::size_t endpoint;  // health routes: index in service_'s endpoints
        Link* link;
    };
    class Attempts;

    // Runs `work` under the mutex of the Link whose current connection
    // attempt `key` names; a late callback of an attempt that is over finds none.
    template <typename Work> static void with_current(void* key, Work work);

    Link(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers);

    void supervise();
    std::string run_connection();  // one connection, connect to close; why it ended
    natsStatus connect(natsConnection** connection, void* attempt, SocketLoop& socket_loop);
    natsStatus subscribe(natsConnection* connection);
    void serve(natsConnection* connection);  // until closed, given up, or stop()
    void on_message(const Route& route, natsConnection* connection, natsMsg* message);
    void answer_health(natsConnection* connection);  // on the SocketLoop's thread, after each read
    void stop_health();  // before a drain, which waits for every subscription to end
    void on_async_error(natsStatus status, const std::string& text);
    Published send_now(const Message& message, const std::string& reply);
    void post(std::function<void(Link&)> work);
    bool stopping();

    EventLoop& loop_;
    config::NatsConfig nats_;
    Auth auth_;
    Handlers handlers_;
    Service service_;
    std::string inbox_;  // this Link's reply subjects: <inbox>.<token>
    std::vector<Route> routes_;  // built once; nats.c holds pointers into it
    // By endpoint, the health routes' subscriptions while they are answered:
    // synchronous ones, read by answer_health, so nats.c hands them to no thread.
    std::vector<std::atomic<natsSubscription*>> health_subscriptions_;
    std::string health_reply_;  // answer_health's, kept from one request to the next

    std::mutex mutex_;  // guards everything below
    std::condition_variable changed_;
    natsConnection* connection_ = nullptr;
    void* attempt_ = nullptr;  // the current connection's key for its callbacks
    std::vector<natsSubscription*> subscriptions_;
    std::size_t live_subscriptions_ = 0;  // until nats.c reports each one complete
    SocketLoop* socket_loop_ = nullptr;  // connection_'s
    bool connected_ = false;
    bool closed_ = false;
    std::string give_up_;  // set when the server refused a subscription: start over
    bool stop_ = false;
    std::chrono::milliseconds drain_timeout_{0};
};

}  // namespace cim::nats

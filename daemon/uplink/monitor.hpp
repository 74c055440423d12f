#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>

#include "event_loop.hpp"
#include "uplink/leafz.hpp"

namespace cim::uplink {

// Asks the local nats-server's monitoring endpoint for /leafz every
// `interval`, with libcurl driven by the daemon's loop (its multi-socket
// interface on sd-event sources): the loop never waits for the endpoint, and
// no thread is added. Each answer, or why there is none (no answer within
// the bound, not /leafz), goes to `done` on the loop.
class Monitor {
public:
    using Result = std::variant<Remotes, std::string>;

    // `url` is the endpoint's base, http://127.0.0.1:8222.
    Monitor(EventLoop& loop, const std::string& url, std::chrono::milliseconds interval,
        std::function<void(const Result&)> done);
    ~Monitor();
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    // How long an answer may take; a slower one is no answer.
    static std::chrono::milliseconds bound(std::chrono::milliseconds interval);

private:
    struct Curl;
    void ask();
    void act(int socket, int events);  // curl_multi_socket_action, then the finished transfer
    void finish();

    EventLoop& loop_;
    std::string url_;
    std::chrono::milliseconds interval_;
    std::function<void(const Result&)> done_;
    std::unique_ptr<Curl> curl_;
    std::map<int, EventSource> sockets_;  // what curl waits on
    EventSource curl_timer_;
    Timer poll_timer_;
    std::string body_;
    bool asking_ = false;
};

}  // namespace cim::uplink

#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "event_loop.hpp"
#include "uplink/http_get.hpp"
#include "uplink/leafz.hpp"

namespace cim::uplink {

// Asks the local nats-server's monitoring endpoint for /leafz every
// `interval`, on the daemon's loop (HttpGet): the loop never waits for the
// endpoint, and no thread is added. Each answer, or why there is none (no
// answer within the bound, not /leafz), goes to `done` on the loop.
class Monitor {
public:
    using Result = std::variant<Remotes, std::string>;

    // `url` is the endpoint's base, http://127.0.0.1:8222.
    Monitor(EventLoop& loop, const std::string& url, std::chrono::milliseconds interval,
        std::function<void(const Result&)> done);
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    // How long an answer may take; a slower one is no answer.
    static std::chrono::milliseconds bound(std::chrono::milliseconds interval);

private:
    void ask();
    void answered(HttpGet::Result answer);

    EventLoop& loop_;
    std::string url_;
    std::chrono::milliseconds interval_;
    std::function<void(const Result&)> done_;
    std::variant<Endpoint, std::string> endpoint_;
    Timer poll_timer_;
    std::unique_ptr<HttpGet> question_;  // while one is out
    EventSource deadline_;  // of the question out
};

}  // namespace cim::uplink

#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "live_state.hpp"

namespace cim {

// The health reply as nats.c's delivery thread reads it: rendered when the
// live state changes, so a request (one per leaf in a fan-out) only stamps
// the values that change with the clock or with every heartbeat into a
// ready text, and a heartbeat renders nothing.
class HealthSnapshot {
public:
    // Loop thread: the state changed.
    void update(const LiveState& live);

    // Any thread: the reply as health_json() renders it at `now`.
    std::string json(std::chrono::system_clock::time_point now = std::chrono::system_clock::now(),
        std::chrono::steady_clock::time_point now_steady = std::chrono::steady_clock::now()) const;

private:
    // Where a value stamped per request sits in the rendered text.
    struct Stamp {
        enum class Value { time, uptime, oldest_pending, heartbeats_sent, last_heartbeat } value;
        std::size_t at;
        std::size_t length;
    };

    struct Rendered {
        std::string text;
        std::vector<Stamp> stamps;  // in order of `at`
        LiveState live;  // as rendered
    };

    struct Heartbeats {
        std::uint64_t sent = 0;
        std::string last;  // rendered once, on the loop
    };

    static std::unique_ptr<const Rendered> render(const LiveState& live);

    mutable std::mutex mutex_;
    std::unique_ptr<const Rendered> rendered_;
    Heartbeats heartbeats_;
};

}  // namespace cim

#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "live_state.hpp"

namespace cim {

// The health reply as the connection's socket thread reads it: rendered by the
// first request after the live state changed (not at every change: an event
// burst changes it with every event, and nobody may ask), kept, and stamped
// per request with the values that change with the clock or with every
// heartbeat. A heartbeat renders nothing; a fan-out, one request per leaf,
// finds the reply ready.
class HealthSnapshot {
public:
    // Loop thread: the state changed.
    void update(const LiveState& live);

    // Any thread: the reply as health_json() renders it at `now`.
    std::string json(std::chrono::system_clock::time_point now = std::chrono::system_clock::now(),
        std::chrono::steady_clock::time_point now_steady = std::chrono::steady_clock::now()) const;
    // The same in `out`, whose room a caller that answers request after
    // request reuses: no allocation per reply.
    void write(std::string& out, std::chrono::system_clock::time_point now = std::chrono::system_clock::now(),
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
    };

    struct Heartbeats {
        std::uint64_t sent = 0;
        std::string last;  // rendered once, on the loop
    };

    static Rendered render(const LiveState& live);

    mutable std::mutex mutex_;
    LiveState live_;  // written by the loop thread only, under the lock
    mutable std::optional<Rendered> rendered_;  // of live_, once a request asked
    Heartbeats heartbeats_;
};

}  // namespace cim

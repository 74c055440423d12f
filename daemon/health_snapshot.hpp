#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "live_state.hpp"

namespace cim {

// The health reply as nats.c's delivery thread reads it: rendered once per
// change of the live state, so a request (one per leaf in a fan-out) only
// stamps the values that depend on the clock into a ready text.
class HealthSnapshot {
public:
    // Loop thread: the state changed.
    void update(const LiveState& live);

    // Any thread: the reply as health_json() renders it at `now`.
    std::string json(std::chrono::system_clock::time_point now = std::chrono::system_clock::now(),
        std::chrono::steady_clock::time_point now_steady = std::chrono::steady_clock::now()) const;

private:
    // Where a value that depends on the clock sits in the rendered text.
    struct Stamp {
        enum class Value { time, uptime, oldest_pending } value;
        std::size_t at;
        std::size_t length;
    };

    struct Rendered {
        std::string text;
        std::vector<Stamp> stamps;  // in order of `at`
        LiveState live;
    };

    mutable std::mutex mutex_;
    std::shared_ptr<const Rendered> rendered_;
};

}  // namespace cim

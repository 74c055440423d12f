#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "live_state.hpp"

namespace cim {

// The health reply as nats.c's delivery thread reads it: the live state as
// of the daemon's last change, rendered at most once per millisecond (the
// resolution of its "time") so a burst of requests shares one answer.
class HealthSnapshot {
public:
    // Loop thread: the state changed.
    void update(const LiveState& live);

    // Any thread.
    std::string json() const;

private:
    mutable std::mutex mutex_;
    LiveState live_;
    mutable std::string rendered_;
    mutable std::chrono::system_clock::time_point rendered_at_;
};

}  // namespace cim

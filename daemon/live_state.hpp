#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "config/config.hpp"
#include "state.hpp"

namespace cim {

// Everything the daemon reports about itself: the one source for heartbeats,
// health replies (NATS and D-Bus), D-Bus properties and systemd STATUS=.
struct LiveState {
    std::string node_id;
    std::string domain;
    std::map<std::string, std::string> labels;
    State state = State::starting;

    bool nats_connected = false;
    std::string nats_server;  // URL of the server in use; empty when disconnected
    std::int64_t max_payload = 0;  // the server's limit; 0 when disconnected
    std::uint32_t reconnects = 0;

    std::uint64_t heartbeats_sent = 0;  // accepted by the server
    std::uint64_t heartbeats_refused = 0;  // too big for the server, or not permitted
    std::uint64_t events_buffered = 0;
    std::uint64_t events_dropped = 0;  // the buffer was full, or the server refused them
    std::uint64_t events_truncated = 0;  // sent with text fields cut to fit max_payload
    // A heartbeat or event was lost lately: `degraded` until `loss_until`
    // (system clock, shown in health) so the end is predictable.
    bool recent_loss = false;
    std::chrono::system_clock::time_point loss_until;
    std::string last_loss;  // why, in words

    config::Bus bus = config::Bus::none;
    bool dbus_name_owned = false;

    bool notify_socket = false;
    std::uint64_t watchdog_usec = 0;

    bool last_reload_failed = false;
    std::string last_error;  // the latest problem in words; empty when none

    std::chrono::system_clock::time_point started_at;
    std::chrono::steady_clock::time_point started_steady;
};

inline std::int64_t uptime_seconds(const LiveState& live, std::chrono::steady_clock::time_point now)
{
    return std::chrono::duration_cast<std::chrono::seconds>(now - live.started_steady).count();
}

}  // namespace cim

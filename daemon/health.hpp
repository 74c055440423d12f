#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

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
    std::uint32_t reconnects = 0;
    std::uint64_t heartbeats_sent = 0;
    std::uint64_t events_buffered = 0;
    std::uint64_t events_dropped = 0;

    config::Bus bus = config::Bus::none;
    bool dbus_name_owned = false;

    bool notify_socket = false;
    std::uint64_t watchdog_usec = 0;

    bool last_reload_failed = false;
    std::string last_error;  // the latest problem in words; empty when none

    std::chrono::system_clock::time_point started_at;
    std::chrono::steady_clock::time_point started_steady;
};

inline constexpr const char* version_string = CIM_LEAF_VERSION;

std::int64_t uptime_seconds(const LiveState& live, std::chrono::steady_clock::time_point now);

// "ok", "degraded" or "failing": the worst of the checks.
std::string health_status(const LiveState& live);

// The io.cim.leaf.v1.health payload.
nlohmann::json health_json(
    const LiveState& live, std::chrono::system_clock::time_point now, std::chrono::steady_clock::time_point now_steady);

// What systemctl status shows on its Status: line.
std::string status_text(const LiveState& live);

}  // namespace cim

#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "state.hpp"
#include "units/unit.hpp"

namespace cim {

// A heartbeat or event lost lately: health says `degraded` until `until`
// (shown in health), so the end is predictable.
struct Loss {
    bool recent = false;
    std::chrono::system_clock::time_point until;
    std::string why;  // the latest, in words

    bool operator==(const Loss&) const = default;
};

// Where the events stand (events::Delivery).
struct EventsState {
    std::string delivery = "waiting";  // "jetstream", "core", or "waiting" for NATS or the stream
    bool durable = false;  // on disk until a stream acknowledged them
    std::string stream;  // the stream's name while delivery is jetstream
    std::uint64_t pending = 0;  // not acknowledged yet (core: not handed to the server)
    std::uint64_t acknowledged = 0;  // since start
    std::uint64_t dropped = 0;  // since start: the spool was full, or the server refused them
    std::uint64_t truncated = 0;  // sent with their data cut to fit the server's max_payload
    std::chrono::system_clock::time_point oldest_pending;  // the oldest pending event's time
    bool overdue = false;  // the oldest pending event has waited longer than events::pending_bound
    std::int64_t spool_bytes = 0;
    std::string spool;  // the spool file
    std::string problem;  // why events are not delivered (or not durable), in words; empty when none

    bool operator==(const EventsState&) const = default;
};

// The local nats-server's uplink to the hub (uplink.monitor_url).
struct UplinkState {
    bool watched = false;
    std::string state = "unknown";  // "up", "down", or "unknown" (the endpoint did not say)
    std::vector<std::pair<std::string, std::string>> remotes;  // the hub's URL, and the RTT to it
    std::chrono::system_clock::time_point since;  // in this state since; unknown keeps the last up/down time
    std::string reason;  // why unknown

    bool operator==(const UplinkState&) const = default;
};

// The systemd units the daemon watches (watch.units).
struct UnitsState {
    bool watched = false;
    bool watching = false;  // subscribed to systemd on the system bus
    std::string reason;  // why not
    std::vector<units::Unit> units;  // by name

    bool operator==(const UnitsState&) const = default;
};

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
    std::chrono::system_clock::time_point last_heartbeat;  // when the latest went out; epoch before the first
    std::uint64_t heartbeats_refused = 0;  // too big for the server, or not permitted
    Loss heartbeat_loss;

    EventsState events;
    Loss event_loss;

    UplinkState uplink;
    UnitsState units;

    config::Bus bus = config::Bus::none;
    bool dbus_name_owned = false;

    bool notify_socket = false;
    std::uint64_t watchdog_usec = 0;

    bool last_reload_failed = false;
    std::string last_error;  // the latest problem in words; empty when none

    std::chrono::system_clock::time_point started_at;
    std::chrono::steady_clock::time_point started_steady;

    bool operator==(const LiveState&) const = default;
};

inline std::int64_t uptime_seconds(const LiveState& live, std::chrono::steady_clock::time_point now)
{
    return std::chrono::duration_cast<std::chrono::seconds>(now - live.started_steady).count();
}

inline std::int64_t oldest_pending_seconds(const EventsState& events, std::chrono::system_clock::time_point now)
{
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - events.oldest_pending).count();
    return events.pending ? std::max<std::int64_t>(0, waited) : 0;
}

}  // namespace cim

#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "config/load.hpp"
#include "live_state.hpp"

namespace cim::nats {

// io.cim.leaf.v1.heartbeat
nlohmann::json heartbeat_json(const LiveState& live, std::uint64_t seq, std::chrono::system_clock::time_point now,
    std::chrono::steady_clock::time_point now_steady);

// NATS's default max_payload (nats-server's max_payload setting).
inline constexpr std::int64_t default_max_payload = 1 << 20;

// The size of the largest heartbeat `config` can produce (its labels and
// domain are fixed; state, seq and uptime vary).
std::size_t largest_heartbeat_bytes(const config::Config& config);

// A problem at node.labels when that heartbeat would not fit NATS's default
// max_payload, so it could never be sent: known before any server is asked.
std::optional<config::Diagnostic> oversized_heartbeat(const config::Config& config, const config::Origin& origin);

// A lifecycle event in the CIM envelope. A chain of events (reloading ->
// reloaded) shares the correlation id of its first event; each names the
// event that caused it. A lone event correlates with and is caused by itself.
struct Event {
    std::string event_id;
    std::string event_type;  // started, ready, reloading, ... (proto/nats/event.schema.json)
    std::string correlation_id;
    std::string causation_id;
    std::chrono::system_clock::time_point time;
    nlohmann::json data = nlohmann::json::object();
};

Event make_event(std::string event_type, nlohmann::json data = nlohmann::json::object(), const Event* cause = nullptr);

// io.cim.leaf.v1.event; `seq` is the node's event number (events::Delivery).
nlohmann::json event_json(const std::string& node_id, std::uint64_t seq, const Event& event);

// The event payload `payload` cut to at most `limit` bytes, so that an event
// always fits the server's max_payload: the longest text in its data is
// shortened (ending in "…"), then the longest list loses items, until it
// fits, and data.truncated says it was cut. Nullopt when even the envelope
// with empty data does not fit.
std::optional<std::string> fit_event(const std::string& payload, std::int64_t limit);

}  // namespace cim::nats

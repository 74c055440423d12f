#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "health.hpp"

namespace cim::nats {

// io.cim.leaf.v1.heartbeat
nlohmann::json heartbeat_json(const LiveState& live, std::uint64_t seq, std::chrono::system_clock::time_point now,
    std::chrono::steady_clock::time_point now_steady);

// A lifecycle event in the CIM envelope. A chain of events (reloading ->
// reloaded) shares the correlation id of its first event; each names the
// event that caused it. A lone event correlates with and is caused by itself.
struct Event {
    std::string event_id;
    std::string event_type;  // started, ready, reloading, reloaded, reload_failed, nats_reconnected, stopping
    std::string correlation_id;
    std::string causation_id;
    std::chrono::system_clock::time_point time;
    nlohmann::json data = nlohmann::json::object();
};

Event make_event(std::string event_type, nlohmann::json data = nlohmann::json::object(), const Event* cause = nullptr);

// io.cim.leaf.v1.event
nlohmann::json event_json(const LiveState& live, const Event& event);

// Serialises for the wire; invalid UTF-8 from outside (labels, errors) is
// replaced rather than allowed to throw.
std::string dump(const nlohmann::json& json);

}  // namespace cim::nats

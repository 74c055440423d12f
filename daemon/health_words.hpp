#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cim {

// Checks of an io.cim.leaf.v1.health payload in words, for `cim-leaf status`
// and `cim-leaf fleet`. They throw nlohmann::json::type_error where a field
// has another type than the schema's.

// "jetstream (stream CIM_LEAF_EVENTS, durable), 0 pending, 0 dropped"
std::string events_words(const nlohmann::json& events);

// "up to nats-leaf://10.0.0.1:7422 (rtt 1.2ms) since 2026-11-30T05:31:36.123Z"
std::string uplink_words(const nlohmann::json& uplink);

// "3 watched, none in trouble", or "3 watched; in trouble: a.service (failed:
// signal, killed 9), b.service (not found)", or "unknown (why)"
std::string units_words(const nlohmann::json& units);

}  // namespace cim

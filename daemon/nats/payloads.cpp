#include "nats/payloads.hpp"

#include <cstdint>

#include "util/ids.hpp"

namespace cim::nats {

namespace {

nlohmann::json envelope(const char* type, const LiveState& live, std::chrono::system_clock::time_point time)
{
    return {{"type", type}, {"node", live.node_id}, {"time", util::rfc3339(time)}, {"version", version_string}};
}

}  // namespace

nlohmann::json heartbeat_json(const LiveState& live, std::uint64_t seq, std::chrono::system_clock::time_point now,
    std::chrono::steady_clock::time_point now_steady)
{
    nlohmann::json out = envelope("io.cim.leaf.v1.heartbeat", live, now);
    out["seq"] = seq;
    out["state"] = std::string(to_string(live.state));
    out["uptime_s"] = uptime_seconds(live, now_steady);
    out["domain"] = live.domain;
    out["labels"] = live.labels;
    return out;
}

Event make_event(std::string event_type, nlohmann::json data, const Event* cause)
{
    Event event;
    event.event_id = util::uuid_v7();
    event.event_type = std::move(event_type);
    event.correlation_id = cause ? cause->correlation_id : event.event_id;
    event.causation_id = cause ? cause->event_id : event.event_id;
    event.time = std::chrono::system_clock::now();
    event.data = std::move(data);
    return event;
}

nlohmann::json event_json(const LiveState& live, const Event& event)
{
    nlohmann::json out = envelope("io.cim.leaf.v1.event", live, event.time);
    out["event_id"] = event.event_id;
    out["event_type"] = event.event_type;
    out["correlation_id"] = event.correlation_id;
    out["causation_id"] = event.causation_id;
    out["data"] = event.data;
    return out;
}

std::string dump(const nlohmann::json& json)
{
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace cim::nats

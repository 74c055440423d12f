#include "nats/payloads.hpp"

#include <cstdint>
#include <limits>

#include "util/ids.hpp"
#include "util/json.hpp"
#include "util/text.hpp"
#include "version.hpp"

namespace cim::nats {

namespace {

nlohmann::json envelope(const char* type, const std::string& node_id, std::chrono::system_clock::time_point time)
{
    return {{"type", type}, {"node", node_id}, {"time", util::rfc3339(time)}, {"version", version_string}};
}

// The longest string, or the longest non-empty list, anywhere in `json`.
template <typename Measure> nlohmann::json* largest(nlohmann::json& json, Measure measure)
{
    nlohmann::json* best = measure(json) > 0 ? &json : nullptr;
    if (json.is_structured())
        for (auto& child : json)
            if (auto* found = largest(child, measure); found && (!best || measure(*found) > measure(*best)))
                best = found;
    return best;
}

}  // namespace

nlohmann::json heartbeat_json(const LiveState& live, std::uint64_t seq, std::chrono::system_clock::time_point now,
    std::chrono::steady_clock::time_point now_steady)
{
    nlohmann::json out = envelope("io.cim.leaf.v1.heartbeat", live.node_id, now);
    out["seq"] = seq;
    out["state"] = std::string(to_string(live.state));
    out["uptime_s"] = uptime_seconds(live, now_steady);
    out["domain"] = live.domain;
    out["labels"] = live.labels;
    return out;
}

std::size_t largest_heartbeat_bytes(const config::Config& config)
{
    LiveState live;
    live.node_id = config.node.id;
    live.domain = config.node.domain;
    live.labels = config.node.labels;
    live.state = State::reconnecting;  // the longest state name
    const auto now = std::chrono::steady_clock::now();
    live.started_steady = now - std::chrono::hours(24 * 365 * 100);
    return util::dump(heartbeat_json(live, std::numeric_limits<std::uint64_t>::max(), {}, now)).size();
}

std::optional<config::Diagnostic> oversized_heartbeat(const config::Config& config, const config::Origin& origin)
{
    const std::size_t bytes = largest_heartbeat_bytes(config);
    if (static_cast<std::int64_t>(bytes) <= default_max_payload)
        return std::nullopt;
    return config::diagnostic_at(origin, "node.labels",
        "make the heartbeat " + std::to_string(bytes) + " bytes, more than NATS's default max_payload of " +
            std::to_string(default_max_payload) + "; use fewer or shorter labels");
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

nlohmann::json event_json(const std::string& node_id, std::uint64_t seq, const Event& event)
{
    nlohmann::json out = envelope("io.cim.leaf.v1.event", node_id, event.time);
    out["seq"] = seq;
    out["event_id"] = event.event_id;
    out["event_type"] = event.event_type;
    out["correlation_id"] = event.correlation_id;
    out["causation_id"] = event.causation_id;
    out["data"] = event.data;
    return out;
}

std::optional<std::string> fit_event(const std::string& payload, std::int64_t limit)
{
    auto fits = [limit](const std::string& text) { return static_cast<std::int64_t>(text.size()) <= limit; };
    if (fits(payload))
        return payload;
    nlohmann::json event = nlohmann::json::parse(payload, nullptr, false);
    if (!event.is_object() || !event.contains("data") || !event["data"].is_object())
        return std::nullopt;
    nlohmann::json& data = event["data"];
    data["truncated"] = true;
    constexpr std::string_view ellipsis = "\xe2\x80\xa6";  // …
    auto text_length = [](const nlohmann::json& j) {
        return j.is_string() ? j.get_ref<const std::string&>().size() : 0;
    };
    auto list_length = [](const nlohmann::json& j) { return j.is_array() ? j.size() : 0; };
    for (std::string out = util::dump(event);; out = util::dump(event)) {
        if (fits(out))
            return out;
        const std::size_t excess = out.size() - static_cast<std::size_t>(std::max<std::int64_t>(limit, 0));
        if (auto* text = largest(data, text_length); text && text_length(*text) > 2 * ellipsis.size()) {
            auto& string = text->get_ref<std::string&>();
            // Half of it, or all of the excess if that is more: few rounds either way.
            const std::size_t cut = std::min(string.size(), std::max(string.size() / 2, excess + ellipsis.size()));
            string = std::string(util::utf8_prefix(string, string.size() - cut)) + std::string(ellipsis);
        } else if (auto* list = largest(data, list_length)) {
            list->erase(list->size() - 1);
        } else if (data.size() > 1) {
            data = {{"truncated", true}};
        } else {
            return std::nullopt;
        }
    }
}

}  // namespace cim::nats

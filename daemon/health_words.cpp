#include "health_words.hpp"

#include <cstdint>

#include "util/text.hpp"

namespace cim {

std::string events_words(const nlohmann::json& events)
{
    const std::string delivery = events.value("delivery", "?");
    const std::string stream = events.value("stream", "");
    std::string out = delivery + " (" + (stream.empty() ? "" : "stream " + stream + ", ") +
        (events.value("durable", false) ? "durable" : "not durable") + "), " +
        std::to_string(events.value("pending", std::uint64_t{0})) + " pending";
    if (const auto oldest = events.value("oldest_pending_s", std::int64_t{0}); oldest > 0)
        out += " (oldest " + util::duration_words(oldest) + ")";
    out += ", " + std::to_string(events.value("dropped", std::uint64_t{0})) + " dropped";
    if (const std::string problem = events.value("problem", ""); !problem.empty())
        out += "; " + problem;
    return out;
}

std::string uplink_words(const nlohmann::json& uplink)
{
    const std::string state = uplink.value("state", "?");
    std::string out = state;
    if (state == "unknown")
        return out + " (" + uplink.value("reason", "") + ")";
    for (const auto& remote : uplink.value("remotes", nlohmann::json::array()))
        out += " to " + remote.value("url", "?") + " (rtt " + remote.value("rtt", "?") + ")";
    if (const std::string since = uplink.value("since", ""); !since.empty())
        out += " since " + since;
    return out;
}

}  // namespace cim

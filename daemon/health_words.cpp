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

namespace {

// "failed: signal, killed 9", "restarting: exit-code, exited 1", "not found"
std::string unit_words(const nlohmann::json& unit)
{
    const std::string load = unit.value("load_state", "?");
    if (load != "loaded")
        return load == "not-found" ? "not found" : load;
    const std::string sub = unit.value("sub_state", "");
    std::string out = sub.starts_with("auto-restart") ? "restarting" : unit.value("active_state", "?");
    if (const std::string result = unit.value("result", ""); !result.empty() && result != "success")
        out += ": " + result;
    if (const std::string code = unit.value("exit_code", ""); !code.empty())
        out += ", " + code + " " + std::to_string(unit.value("exit_status", 0));
    return out;
}

}  // namespace

std::string units_words(const nlohmann::json& units)
{
    const auto list = units.value("units", nlohmann::json::array());
    if (units.value("status", "?") == "unknown")
        return "unknown (" + units.value("reason", "") + ")";
    std::string out = std::to_string(list.size()) + " watched";
    std::string trouble;
    for (const auto& unit : list)
        if (unit.value("status", "ok") != "ok")
            trouble += (trouble.empty() ? "" : ", ") + unit.value("unit", "?") + " (" + unit_words(unit) + ")";
    return out + (trouble.empty() ? ", none in trouble" : "; in trouble: " + trouble);
}

}  // namespace cim

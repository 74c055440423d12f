#include "units/tracker.hpp"

namespace cim::units {

namespace {

nlohmann::json exit_json(const Unit& unit)
{
    return {{"unit", unit.name}, {"result", unit.result}, {"exit_code", unit.exit_code},
        {"exit_status", unit.exit_status}, {"restarts", unit.restarts}};
}

}  // namespace

std::vector<nats::Event> Tracker::update(const std::vector<Unit>& units, std::chrono::system_clock::time_point now)
{
    std::vector<nats::Event> events;
    std::map<std::string, Unit> seen;
    for (const Unit& unit : units) {
        if (unit.load_state == "stub")
            continue;  // systemd has not answered for it yet
        seen.emplace(unit.name, unit);
        const auto last = last_.find(unit.name);
        if (last == last_.end()) {
            if (failing(unit))
                failing_since_.emplace(unit.name, now);
            continue;
        }
        if (failing(unit) && !failing(last->second)) {
            failing_since_.emplace(unit.name, now);
            nlohmann::json data = exit_json(unit);
            data["active_state"] = unit.active_state;
            data["sub_state"] = unit.sub_state;
            data["critical"] = unit.critical;
            events.push_back(nats::make_event("unit_failed", std::move(data)));
        }
        if (unit.restarts > last->second.restarts)
            events.push_back(nats::make_event("unit_restarted", exit_json(unit)));
        const auto since = failing_since_.find(unit.name);
        if (since != failing_since_.end() && unit.active_state == "active") {
            events.push_back(nats::make_event("unit_recovered",
                {{"unit", unit.name}, {"active_state", unit.active_state}, {"sub_state", unit.sub_state},
                    {"down_s", std::chrono::duration_cast<std::chrono::seconds>(now - since->second).count()}}));
            failing_since_.erase(since);
        }
    }
    std::erase_if(failing_since_, [&](const auto& entry) { return !seen.contains(entry.first); });
    last_ = std::move(seen);
    return events;
}

}  // namespace cim::units

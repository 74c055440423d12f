#include "health.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "util/ids.hpp"
#include "util/text.hpp"
#include "version.hpp"

namespace cim {

namespace {

constexpr std::array<const char*, 3> severities{"ok", "degraded", "failing"};

// A check's detail is rendered only for a health reply: the status alone
// (D-Bus `Healthy`, compared at every change of state, heartbeats included)
// needs none, and the watched units' detail is most of a reply's cost.
struct Check {
    int severity;  // index into severities
    std::function<nlohmann::json()> detail;  // refers to the LiveState it was built from
    const char* word = nullptr;  // the check's own status word, where severities has none for it
};

// A recent loss as health shows it: why, and until when it makes the check degraded.
void add_loss(nlohmann::json& detail, const Loss& loss)
{
    detail["last_loss"] = loss.why;
    detail["degraded_until"] = loss.recent ? util::rfc3339(loss.until) : std::string();
}

Check nats_check(const LiveState& live)
{
    return {live.nats_connected ? (live.heartbeat_loss.recent ? 1 : 0) : 2, [&live] {
                nlohmann::json detail{{"connected", live.nats_connected}, {"server", live.nats_server},
                    {"max_payload", live.max_payload}, {"reconnects", live.reconnects},
                    {"heartbeats_refused", live.heartbeats_refused}};
                add_loss(detail, live.heartbeat_loss);
                return detail;
            }};
}

Check events_check(const LiveState& live, std::chrono::system_clock::time_point now)
{
    const EventsState& events = live.events;
    const bool trouble = !events.problem.empty() || events.overdue || live.event_loss.recent;
    return {trouble ? 1 : 0, [&live, &events, now] {
                nlohmann::json detail{{"delivery", events.delivery}, {"durable", events.durable},
                    {"stream", events.stream}, {"pending", events.pending}, {"acknowledged", events.acknowledged},
                    {"dropped", events.dropped}, {"truncated", events.truncated},
                    {"oldest_pending_s", oldest_pending_seconds(events, now)}, {"spool", events.spool},
                    {"spool_bytes", events.spool_bytes}, {"problem", events.problem}};
                add_loss(detail, live.event_loss);
                return detail;
            }};
}

// `unknown` (the endpoint did not answer, or not as /leafz does) counts as
// degraded: nobody can vouch for the uplink then.
Check uplink_check(const LiveState& live)
{
    const UplinkState& uplink = live.uplink;
    return {uplink.state == "up" ? 0 : 1,
        [&uplink] {
            nlohmann::json remotes = nlohmann::json::array();
            for (const auto& [url, rtt] : uplink.remotes)
                remotes.push_back({{"url", url}, {"rtt", rtt}});
            return nlohmann::json{{"state", uplink.state}, {"connected", uplink.state == "up"},
                {"remotes", std::move(remotes)}, {"since", util::rfc3339_or_empty(uplink.since)},
                {"reason", uplink.reason}};
        },
        uplink.state == "unknown" ? "unknown" : nullptr};
}

// A unit in trouble is degraded, a critical one failing.
int unit_severity(const units::Unit& unit)
{
    return units::in_trouble(unit) ? (unit.critical ? 2 : 1) : 0;
}

// The worst of the units; not watching (no system bus, no systemd on it)
// counts as degraded and says `unknown`: nobody can vouch for the units then.
Check units_check(const LiveState& live)
{
    const UnitsState& units = live.units;
    int severity = units.watching ? 0 : 1;
    for (const units::Unit& unit : units.units)
        severity = std::max(severity, unit_severity(unit));
    return {severity,
        [&units] {
            nlohmann::json list = nlohmann::json::array();
            for (const units::Unit& unit : units.units)
                list.push_back({{"unit", unit.name}, {"load_state", unit.load_state},
                    {"active_state", unit.active_state}, {"sub_state", unit.sub_state}, {"result", unit.result},
                    {"restarts", unit.restarts}, {"exit_code", unit.exit_code}, {"exit_status", unit.exit_status},
                    {"since", util::rfc3339_or_empty(unit.since)}, {"critical", unit.critical},
                    {"status", severities[static_cast<std::size_t>(unit_severity(unit))]}});
            return nlohmann::json{{"watching", units.watching}, {"reason", units.reason},
                {"failed", units::in_trouble(units.units)}, {"units", std::move(list)}};
        },
        !units.watching && severity < 2 ? "unknown" : nullptr};
}

Check dbus_check(const LiveState& live)
{
    const bool disabled = live.bus == config::Bus::none;
    return {disabled || live.dbus_name_owned ? 0 : 2, [&live, disabled] {
                return nlohmann::json{{"bus",
                                          std::string(disabled                      ? "none"
                                                  : live.bus == config::Bus::system ? "system"
                                                                                    : "session")},
                    {"name_owned", live.dbus_name_owned}};
            }};
}

Check systemd_check(const LiveState& live)
{
    return {0, [&live] {
                return nlohmann::json{{"notify", live.notify_socket}, {"watchdog_usec", live.watchdog_usec}};
            }};
}

Check config_check(const LiveState& live)
{
    return {live.last_reload_failed ? 1 : 0, [&live] {
                return nlohmann::json{{"last_reload_failed", live.last_reload_failed}};
            }};
}

using Checks = std::vector<std::pair<const char*, Check>>;

// `now` only dates details; no severity depends on it, so a status changes
// only with a change of the live state. The uplink is a check only where it
// is watched.
Checks all_checks(const LiveState& live, std::chrono::system_clock::time_point now = {})
{
    Checks checks{{"nats", nats_check(live)}, {"events", events_check(live, now)}};
    if (live.uplink.watched)
        checks.emplace_back("uplink", uplink_check(live));
    if (live.units.watched)
        checks.emplace_back("units", units_check(live));
    checks.emplace_back("dbus", dbus_check(live));
    checks.emplace_back("systemd", systemd_check(live));
    checks.emplace_back("config", config_check(live));
    return checks;
}

int worst_severity(const Checks& checks)
{
    int worst = 0;
    for (const auto& [name, check] : checks)
        worst = std::max(worst, check.severity);
    return worst;
}

}  // namespace

std::string health_status(const LiveState& live)
{
    return severities[static_cast<std::size_t>(worst_severity(all_checks(live)))];
}

nlohmann::json health_json(
    const LiveState& live, std::chrono::system_clock::time_point now, std::chrono::steady_clock::time_point now_steady)
{
    const Checks all = all_checks(live, now);
    nlohmann::json checks = nlohmann::json::object();
    for (const auto& [name, check] : all) {
        nlohmann::json entry = check.detail();
        entry["status"] = check.word ? check.word : severities[static_cast<std::size_t>(check.severity)];
        checks[name] = std::move(entry);
    }
    return {
        {"type", "io.cim.leaf.v1.health"},
        {"node", live.node_id},
        {"time", util::rfc3339(now)},
        {"version", version_string},
        {"status", severities[static_cast<std::size_t>(worst_severity(all))]},
        {"state", std::string(to_string(live.state))},
        {"uptime_s", uptime_seconds(live, now_steady)},
        {"started", util::rfc3339(live.started_at)},
        {"heartbeats_sent", live.heartbeats_sent},
        {"last_heartbeat", util::rfc3339_or_empty(live.last_heartbeat)},
        {"last_error", live.last_error},
        {"checks", std::move(checks)},
    };
}

namespace {

// "; uplink down since 2026-11-30T05:31:36.123Z", or nothing while it is up
// (or not watched): what an operator must see in systemctl status.
std::string uplink_words(const LiveState& live)
{
    const UplinkState& uplink = live.uplink;
    if (!uplink.watched || uplink.state == "up")
        return {};
    if (uplink.state == "down")
        return "; uplink to the hub down since " + util::rfc3339(uplink.since);
    return "; uplink unknown (" + uplink.reason + ")";
}

// "; failed units: a.service, b.service", "; units unknown (why)", or nothing.
std::string units_words(const LiveState& live)
{
    const UnitsState& units = live.units;
    if (!units.watched)
        return {};
    if (!units.watching)
        return "; units unknown (" + units.reason + ")";
    const auto failed = units::in_trouble(units.units);
    return failed.empty() ? std::string() : "; failed units: " + util::join(failed, ", ");
}

}  // namespace

std::string status_text(const LiveState& live)
{
    switch (live.state) {
    case State::starting:
        return "Starting";
    case State::connecting:
        return "Connecting to NATS" + (live.last_error.empty() ? std::string() : " (" + live.last_error + ")");
    case State::connected:
        // Nothing that changes with every heartbeat: each new STATUS= wakes PID 1.
        return "Connected to " + live.nats_server + uplink_words(live) + units_words(live) +
            (live.events.problem.empty() ? std::string() : "; events not delivered: " + live.events.problem);
    case State::reconnecting:
        return "Reconnecting to NATS" + (live.last_error.empty() ? std::string() : " (" + live.last_error + ")") +
            uplink_words(live) + units_words(live);
    case State::reloading:
        return "Reloading configuration";
    case State::stopping:
        return "Stopping";
    }
    return "";
}

}  // namespace cim

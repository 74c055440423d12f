#include "fleet/report.hpp"

#include <algorithm>
#include <array>
#include <set>

#include "health_words.hpp"
#include "util/ids.hpp"
#include "util/text.hpp"

namespace cim::fleet {

namespace {

constexpr std::array<const char*, 3> statuses{"ok", "degraded", "failing"};

std::optional<std::string> node_in(const nlohmann::json& health)
{
    const auto node = health.find("node");
    if (node == health.end() || !node->is_string() || !util::is_node_id(node->get_ref<const std::string&>()))
        return std::nullopt;
    return node->get<std::string>();
}

// The checks that are not ok, in the words `cim-leaf status` uses.
std::vector<std::string> problems_in(const nlohmann::json& checks)
{
    std::vector<std::string> out;
    for (const auto& [name, check] : checks.items()) {
        const std::string status = check.value("status", "?");
        if (status == "ok")
            continue;
        if (name == "nats")
            out.push_back(check.value("connected", false) ? "NATS " + status + ": " + check.value("last_loss", "")
                                                          : "NATS not connected");
        else if (name == "events")
            out.push_back("events: " + events_words(check));
        else if (name == "uplink")
            out.push_back("uplink " + uplink_words(check));
        else if (name == "units")
            out.push_back("units: " + units_words(check));
        else if (name == "dbus")
            out.push_back("D-Bus name not owned on the " + check.value("bus", "?") + " bus");
        else if (name == "config")
            out.push_back("the last reload failed; the previous configuration runs");
        else
            out.push_back(name + " " + status);
    }
    return out;
}

std::optional<std::int64_t> heartbeat_age(const nlohmann::json& health)
{
    const auto beat = util::parse_rfc3339(health.value("last_heartbeat", ""));
    const auto now = util::parse_rfc3339(health.value("time", ""));
    if (!beat || !now)
        return std::nullopt;
    return std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(*now - *beat).count());
}

// A health answer as the fleet view shows it, or none when it is not one:
// not JSON, no node id, no status, or a field of another type than the
// schema's.
std::optional<Leaf> read_leaf(const std::string& answer)
{
    auto health = nlohmann::json::parse(answer, nullptr, false);
    if (!health.is_object())  // also when discarded
        return std::nullopt;
    auto node = node_in(health);
    if (!node)
        return std::nullopt;
    try {
        Leaf leaf;
        leaf.node = std::move(*node);
        leaf.status = health.at("status").get<std::string>();
        if (std::find(statuses.begin(), statuses.end(), leaf.status) == statuses.end())
            return std::nullopt;
        leaf.state = health.value("state", "?");
        leaf.version = health.value("version", "?");
        leaf.uptime_s = health.value("uptime_s", std::int64_t{0});
        const nlohmann::json& checks = health.at("checks");
        if (!checks.is_object())
            return std::nullopt;
        if (const auto uplink = checks.find("uplink"); uplink != checks.end())
            leaf.uplink = uplink->value("state", "unknown");
        const nlohmann::json events = checks.value("events", nlohmann::json::object());
        leaf.events_pending = events.value("pending", std::uint64_t{0});
        leaf.events_dropped = events.value("dropped", std::uint64_t{0});
        leaf.events_ok = events.value("status", "ok") == "ok";
        leaf.heartbeat_age_s = heartbeat_age(health);
        leaf.problems = problems_in(checks);
        leaf.health = std::move(health);
        return leaf;
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
}

std::string plural(std::size_t n, const std::string& one, const std::string& many)
{
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::optional<std::string> node_of(const std::string& answer)
{
    auto leaf = read_leaf(answer);
    return leaf ? std::optional<std::string>(std::move(leaf->node)) : std::nullopt;
}

Report make_report(const std::vector<std::string>& answers, const std::optional<Expectation>& expected)
{
    Report report;
    for (const auto& answer : answers) {
        if (auto leaf = read_leaf(answer))
            report.leaves.push_back(std::move(*leaf));
        else
            ++report.unreadable;
    }
    std::stable_sort(
        report.leaves.begin(), report.leaves.end(), [](const Leaf& a, const Leaf& b) { return a.node < b.node; });

    std::set<std::string> nodes;
    for (const Leaf& leaf : report.leaves) {
        if (!nodes.insert(leaf.node).second && (report.duplicates.empty() || report.duplicates.back() != leaf.node))
            report.duplicates.push_back(leaf.node);
        (leaf.status == "ok" ? report.ok : leaf.status == "degraded" ? report.degraded : report.failing) += 1;
    }
    report.answered_nodes = nodes.size();
    report.expected = expected;
    if (expected) {
        for (const auto& name : expected->names)
            if (!nodes.contains(name))
                report.missing.push_back(name);
        report.expectation_met = met(*expected, nodes);
    }
    return report;
}

int exit_status(const Report& report)
{
    return report.failing > 0 || !report.expectation_met ? 1 : 0;
}

std::string summary_line(const Report& report)
{
    std::string out = report.leaves.empty()
        ? std::string("no leaf answered")
        : plural(report.leaves.size(), "leaf", "leaves") + ": " + std::to_string(report.ok) + " ok, " +
            std::to_string(report.degraded) + " degraded, " + std::to_string(report.failing) + " failing";
    if (report.expected) {
        const std::size_t answered = report.expected->names.empty()
            ? report.answered_nodes
            : report.expected->names.size() - report.missing.size();
        out += "; expected " + std::to_string(report.expected->count) + ", " + std::to_string(answered) + " answered";
        if (!report.missing.empty())
            out += "; missing: " + util::join(report.missing, ", ");
    }
    if (!report.duplicates.empty())
        out +=
            "; more than one answer from " + util::join(report.duplicates, ", ") + " (one node id on several hosts?)";
    if (report.unreadable > 0)
        out += "; " + plural(report.unreadable, "answer was", "answers were") + " not a cim-leaf health payload";
    return out;
}

nlohmann::json report_json(const Report& report)
{
    nlohmann::json leaves = nlohmann::json::array();
    for (const Leaf& leaf : report.leaves)
        leaves.push_back(leaf.health);
    nlohmann::json expected_nodes = nlohmann::json::array();
    if (report.expected)
        for (const auto& name : report.expected->names)
            expected_nodes.push_back(name);
    return {
        {"leaves", std::move(leaves)},
        {"summary",
            {
                {"answered", report.answered_nodes},
                {"ok", report.ok},
                {"degraded", report.degraded},
                {"failing", report.failing},
                {"expected", report.expected ? nlohmann::json(report.expected->count) : nlohmann::json()},
                {"expected_nodes", std::move(expected_nodes)},
                {"missing", report.missing},
                {"duplicates", report.duplicates},
                {"unreadable", report.unreadable},
            }},
    };
}

}  // namespace cim::fleet

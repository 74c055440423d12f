#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet/expect.hpp"

namespace cim::fleet {

// One leaf's health answer, and what the fleet view shows of it.
struct Leaf {
    nlohmann::json health;  // as it answered (io.cim.leaf.v1.health)
    std::string node;
    std::string status;  // ok | degraded | failing
    std::string state;
    std::string version;
    std::int64_t uptime_s = 0;
    std::string uplink;  // up | down | unknown; empty where it is not watched
    std::uint64_t events_pending = 0;
    std::uint64_t events_dropped = 0;
    bool events_ok = true;
    // Since its latest heartbeat, by the leaf's own clock (so no skew
    // between hosts); none before the first.
    std::optional<std::int64_t> heartbeat_age_s;
    std::vector<std::string> problems;  // every check that is not ok, in words
};

// What came back from the fleet, judged.
struct Report {
    std::vector<Leaf> leaves;  // sorted by node
    std::size_t unreadable = 0;  // answers that are no health payload
    std::vector<std::string> duplicates;  // node ids that answered more than once
    std::size_t ok = 0, degraded = 0, failing = 0;
    std::optional<Expectation> expected;
    std::size_t answered_nodes = 0;  // distinct
    std::vector<std::string> missing;  // expected by name, and silent
    bool expectation_met = true;
};

// The node id of a health answer, or none when it is not one (as
// make_report counts it).
std::optional<std::string> node_of(const std::string& answer);

Report make_report(const std::vector<std::string>& answers, const std::optional<Expectation>& expected);

// 1 when a leaf is failing or the expectation is not met, else 0.
int exit_status(const Report& report);

// "3 leaves: 2 ok, 1 degraded, 0 failing; expected 4, 3 answered; missing: leaf-d"
std::string summary_line(const Report& report);

// The --json document: {"leaves": [health...], "summary": {...}} (README).
nlohmann::json report_json(const Report& report);

}  // namespace cim::fleet

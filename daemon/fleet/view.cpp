#include "fleet/view.hpp"

#include "fleet/table.hpp"
#include "util/text.hpp"

namespace cim::fleet {

namespace {

Colour status_colour(const std::string& status)
{
    return status == "ok" ? Colour::green : status == "degraded" ? Colour::yellow : Colour::red;
}

Cell uplink_cell(const std::string& state)
{
    if (state.empty())
        return {"-"};  // not watched
    return {printable(state), state == "up" ? Colour::none : state == "down" ? Colour::red : Colour::yellow};
}

Cell events_cell(const Leaf& leaf)
{
    std::string text = std::to_string(leaf.events_pending);
    if (leaf.events_dropped > 0)
        text += " (" + std::to_string(leaf.events_dropped) + " dropped)";
    return {text, leaf.events_dropped > 0 ? Colour::red : leaf.events_ok ? Colour::none : Colour::yellow};
}

Cell heartbeat_cell(const Leaf& leaf)
{
    if (!leaf.heartbeat_age_s)
        return {"never", Colour::yellow};
    return {util::duration_words(*leaf.heartbeat_age_s, 1) + " ago"};
}

std::vector<Cell> row(const Leaf& leaf)
{
    return {
        {leaf.node},
        {leaf.status, status_colour(leaf.status)},
        {printable(leaf.state), leaf.state == "connected" ? Colour::none : Colour::yellow},
        {util::duration_words(leaf.uptime_s, 2)},
        uplink_cell(leaf.uplink),
        events_cell(leaf),
        {printable(leaf.version)},
        heartbeat_cell(leaf),
    };
}

}  // namespace

std::string render(const Report& report, bool colour)
{
    std::string out;
    if (!report.leaves.empty()) {
        std::vector<std::vector<Cell>> rows;
        for (const Leaf& leaf : report.leaves)
            rows.push_back(row(leaf));
        out +=
            aligned({"NODE", "STATUS", "STATE", "UPTIME", "UPLINK", "PENDING", "VERSION", "HEARTBEAT"}, rows, colour);
        std::string problems;
        for (const Leaf& leaf : report.leaves)
            for (const auto& problem : leaf.problems)
                problems += painted(leaf.node, status_colour(leaf.status), colour) + ": " + printable(problem) + "\n";
        out += problems.empty() ? "" : "\n" + problems;
        out += "\n";
    }
    const std::string summary = summary_line(report);
    return out + painted(summary, exit_status(report) == 0 ? Colour::none : Colour::red, colour) + "\n";
}

bool colour_wanted(bool terminal, const char* no_color)
{
    return terminal && (no_color == nullptr || *no_color == '\0');
}

}  // namespace cim::fleet

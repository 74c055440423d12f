#pragma once

#include <string>

#include "fleet/report.hpp"

namespace cim::fleet {

// The human fleet view: a line per leaf (NODE STATUS STATE UPTIME UPLINK
// PENDING VERSION HEARTBEAT), a line per problem of the leaves that are not
// ok, and the summary line; with `colour`, problems in yellow and red.
std::string render(const Report& report, bool colour);

// Colour only on a terminal, and never with NO_COLOR set to anything but
// the empty string (no-color.org).
bool colour_wanted(bool terminal, const char* no_color);

}  // namespace cim::fleet

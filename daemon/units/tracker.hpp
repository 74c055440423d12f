#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "nats/payloads.hpp"
#include "units/unit.hpp"

namespace cim::units {

// Turns the watched units' successive states into events: unit_failed when
// one fails (or waits to be restarted after failing), unit_restarted when
// systemd restarts it, unit_recovered when a failed one is active again.
// A unit's first known state makes none: it is in health, and the daemon's
// start is no news about the unit.
class Tracker {
public:
    std::vector<nats::Event> update(const std::vector<Unit>& units, std::chrono::system_clock::time_point now);

private:
    std::map<std::string, Unit> last_;
    std::map<std::string, std::chrono::system_clock::time_point> failing_since_;
};

}  // namespace cim::units

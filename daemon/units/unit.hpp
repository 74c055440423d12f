#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace cim::units {

// A watched unit as systemd reports it (org.freedesktop.systemd1.Unit, and
// .Service for services).
struct Unit {
    std::string name;
    std::string load_state = "stub";  // until systemd has answered
    std::string active_state = "inactive";
    std::string sub_state;
    std::string result;  // services only; empty for other units
    std::uint32_t restarts = 0;  // NRestarts: automatic restarts since the last manual start
    std::string exit_code;  // of the main process: "exited", "killed", "dumped", or empty
    std::int32_t exit_status = 0;  // its exit status, or the signal number
    std::chrono::system_clock::time_point since;  // StateChangeTimestamp; epoch when never changed
    bool critical = false;  // matches watch.critical

    bool operator==(const Unit&) const = default;
};

// Failed, or waiting to be restarted after failing.
bool failing(const Unit& unit);

// Failing, or not a unit systemd can run: not found, or a bad unit file.
bool in_trouble(const Unit& unit);

// The names of those in trouble, in order.
std::vector<std::string> in_trouble(const std::vector<Unit>& units);

// Whether `name` matches a watch.units or watch.critical entry (a name or a glob).
bool matches(const std::vector<std::string>& patterns, const std::string& name);

// The unit's object path: systemd's bus label escaping of its name.
std::string object_path(const std::string& name);

// "exited" for CLD_EXITED and so on: siginfo's si_code as ExecMainCode gives it.
std::string exit_code_words(std::int32_t code);

}  // namespace cim::units

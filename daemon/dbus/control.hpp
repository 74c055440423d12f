#pragma once

#include <optional>
#include <string>

#include "live_state.hpp"

namespace cim::dbus {

// What the D-Bus object asks of the daemon; the daemon implements it, so the
// D-Bus glue knows nothing of NATS, config or systemd.
class Control {
public:
    virtual ~Control() = default;
    virtual const LiveState& live() const = 0;
    virtual std::string health_json() const = 0;
    // The same path as SIGHUP; the error in words when the new config is rejected.
    virtual std::optional<std::string> reload() = 0;
};

inline constexpr const char* bus_name = "org.cim.Leaf1";
inline constexpr const char* object_path = "/org/cim/Leaf1";
inline constexpr const char* interface_name = "org.cim.Leaf1";

}  // namespace cim::dbus

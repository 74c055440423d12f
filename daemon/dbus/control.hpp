#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
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

// What the daemon hears of its bus connection, on the loop thread.
struct Handlers {
    std::function<void()> owned;  // the name is ours, the object served
    std::function<void(const std::string&)> failed;  // at start-up: why not, in words
    std::function<void(const std::string&)> lost;  // later: the connection broke
};

// The daemon's bus connection as the daemon sees it: dbus::Bus is the real
// one; tests put a double in its place.
class Connection {
public:
    virtual ~Connection() = default;
    // Announces the properties that differ between the two (PropertiesChanged).
    virtual void changed(const LiveState& before, const LiveState& after) = 0;
};

// Starts connecting to `bus`; `owned` or `failed` follows.
using Connector = std::function<std::unique_ptr<Connection>(config::Bus bus, Control& control, Handlers handlers)>;

inline constexpr const char* bus_name = "org.cim.Leaf1";
inline constexpr const char* object_path = "/org/cim/Leaf1";
inline constexpr const char* interface_name = "org.cim.Leaf1";

}  // namespace cim::dbus

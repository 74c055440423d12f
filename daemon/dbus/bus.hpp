#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sdbus-c++/sdbus-c++.h>

#include "config/config.hpp"
#include "dbus/control.hpp"
#include "event_loop.hpp"

namespace cim::dbus {

class LeafObject;
class Opening;

// How long the bus may take at start-up to connect, authenticate and give
// the daemon org.cim.Leaf1 before the daemon gives up (and systemd restarts
// it): a bus answers within milliseconds, a loaded one within seconds.
inline constexpr std::chrono::seconds start_bound{10};

// The daemon's bus connection, owning org.cim.Leaf1 and serving
// /org/cim/Leaf1 from the daemon's event loop. Nothing here waits for the
// bus: the connection is opened off the loop (see Opening), and then only
// sends, which sd-bus queues when the bus does not read.
class Bus final : public Connection {
public:
    // Starts connecting; `owned` or `failed` follows within start_bound.
    Bus(EventLoop& loop, config::Bus bus, Control& control, Handlers handlers);
    ~Bus() override;

    void changed(const LiveState& before, const LiveState& after) override;

private:
    void adopt(std::unique_ptr<sdbus::IConnection> connection);
    void disconnect();
    void process();
    bool backed_up() const;
    void emit_pending();

    EventLoop& loop_;
    Control& control_;
    Handlers handlers_;
    std::string which_;  // "system" or "session"
    std::unique_ptr<Opening> opening_;
    EventSource start_deadline_;
    std::unique_ptr<sdbus::IConnection> connection_;
    std::unique_ptr<LeafObject> object_;
    ExternalIo io_;
    std::vector<std::string> pending_;  // changed properties not announced yet
    bool holding_back_ = false;  // while backed_up()
};

}  // namespace cim::dbus

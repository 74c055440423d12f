#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <sdbus-c++/sdbus-c++.h>

#include "config/config.hpp"
#include "dbus/control.hpp"
#include "event_loop.hpp"

namespace cim::dbus {

class LeafObject;

// The daemon's bus connection, owning org.cim.Leaf1 and serving
// /org/cim/Leaf1 from the daemon's sd-event loop (sdbus-c++ 1.x has no
// sd-event attach; its poll data drives an IO and a timer source).
class Bus {
public:
    // Connects and requests the name; throws std::runtime_error saying why
    // not (bus unreachable, name taken, denied by policy).
    Bus(EventLoop& loop, config::Bus bus, Control& control, std::function<void(const std::string&)> lost);
    ~Bus();

    void changed(const LiveState& before, const LiveState& after);

private:
    static int on_io(sd_event_source*, int, std::uint32_t, void* self);
    static int on_time(sd_event_source*, std::uint64_t, void* self);
    static int on_prepare(sd_event_source*, void* self);
    void process();
    void prepare();

    std::unique_ptr<sdbus::IConnection> connection_;
    std::unique_ptr<LeafObject> object_;
    std::function<void(const std::string&)> lost_;
    EventSource io_;
    EventSource timer_;
};

}  // namespace cim::dbus

#pragma once

#include <functional>
#include <memory>
#include <string>

#include <sdbus-c++/sdbus-c++.h>

#include "config/config.hpp"
#include "event_loop.hpp"

namespace cim::dbus {

// A connection to the bus with org.cim.Leaf1 owned, or why there is none.
struct Opened {
    std::unique_ptr<sdbus::IConnection> connection;
    std::string error;  // when there is no connection
};

// Connects to a bus and requests org.cim.Leaf1 on a thread of its own, and
// hands the result to `done` on the loop. sdbus-c++ 1.2 can only connect
// synchronously: its connection factories wait for SASL authentication and
// Hello, which sd-bus gives 90 s, and it cannot adopt an sd_bus started
// asynchronously (createBusConnection(sd_bus*) came in 1.4). So the loop
// keeps serving signals and the watchdog, and bounds the wait itself.
class Opening {
public:
    Opening(EventLoop& loop, config::Bus bus, std::function<void(Opened)> done);
    // A thread still waiting for the bus is left to it: `done` is not
    // called, and whatever it opens is closed on that thread.
    ~Opening();
    Opening(const Opening&) = delete;
    Opening& operator=(const Opening&) = delete;

private:
    struct Shared;
    std::shared_ptr<Shared> shared_;
};

}  // namespace cim::dbus

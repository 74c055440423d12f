#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sdbus-c++/sdbus-c++.h>

#include "config/config.hpp"
#include "event_loop.hpp"

namespace cim::dbus {

// A connection to the bus made ready by its Preparation, or why there is none.
struct Opened {
    std::unique_ptr<sdbus::IConnection> connection;
    std::vector<sdbus::Slot> slots;  // the preparation's matches; declared last, so released first
    std::string error;  // when there is no connection
};

// What a connection needs before the loop takes it, done on the opening
// thread since each step waits for the bus: the daemon's own connection
// requests org.cim.Leaf1 (owning_leaf_name), the units watcher adds its
// matches. It throws sdbus::Error (its message in words), or returns the
// slots to keep.
using Preparation = std::function<std::vector<sdbus::Slot>(sdbus::IConnection&)>;
Preparation owning_leaf_name(config::Bus bus);

// Connects to a bus and prepares the connection on a thread of its own, and
// hands the result to `done` on the loop. sdbus-c++ 1.2 can only connect
// synchronously: its connection factories wait for SASL authentication and
// Hello, which sd-bus gives 90 s, and it cannot adopt an sd_bus started
// asynchronously (createBusConnection(sd_bus*) came in 1.4). So the loop
// keeps serving signals and the watchdog, and bounds the wait itself.
class Opening {
public:
    Opening(EventLoop& loop, config::Bus bus, Preparation prepare, std::function<void(Opened)> done);
    // A thread still waiting for the bus is left to it: `done` is not
    // called, and whatever it opens is closed on that thread.
    ~Opening();
    Opening(const Opening&) = delete;
    Opening& operator=(const Opening&) = delete;

private:
    struct Shared;
    std::shared_ptr<Shared> shared_;
};

// Drives an opened connection from the loop: `process` runs whenever sd-bus
// has something to do (readable, writable while it has queued, a timeout).
ExternalIo drive(EventLoop& loop, sdbus::IConnection& connection, std::function<void()> process);

// Closes a connection at once. sd-bus closes one only after flushing what it
// has queued, waiting for as long as the bus takes to read it: forever when
// the bus is hung. Shutting the socket down first drops that instead.
void close(std::unique_ptr<sdbus::IConnection>& connection);

}  // namespace cim::dbus

#include "dbus/opening.hpp"

#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "dbus/control.hpp"

namespace cim::dbus {

namespace {

Opened open(config::Bus bus)
{
    const std::string which = bus == config::Bus::system ? "system" : "session";
    Opened opened;
    try {
        opened.connection =
            bus == config::Bus::system ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
    } catch (const sdbus::Error& e) {
        opened.error = "cannot connect to the " + which + " bus: " + e.getMessage();
        return opened;
    }
    try {
        opened.connection->requestName(bus_name);
        return opened;
    } catch (const sdbus::Error& e) {
        const std::string message = e.getMessage();
        // sd_bus_request_name: EEXIST when another owner has it, EACCES when
        // the bus policy forbids it.
        if (message.find("File exists") != std::string::npos)
            opened.error =
                std::string(bus_name) + " is already owned on the " + which + " bus: is another cim-leaf running?";
        else if (e.getName() == "org.freedesktop.DBus.Error.AccessDenied" ||
            message.find("ermission denied") != std::string::npos)
            opened.error = "the " + which + " bus policy does not let this user own " + bus_name +
                " (org.cim.Leaf1.conf allows only user cim-leaf): " + message;
        else
            opened.error = std::string("cannot own ") + bus_name + " on the " + which + " bus: " + message;
    }
    opened.connection.reset();
    return opened;
}

}  // namespace

struct Opening::Shared {
    std::mutex mutex;
    EventLoop* loop = nullptr;  // under mutex; null once abandoned
    std::function<void(Opened)> done;  // on the loop thread only
};

Opening::Opening(EventLoop& loop, config::Bus bus, std::function<void(Opened)> done)
    : shared_(std::make_shared<Shared>())
{
    shared_->loop = &loop;
    shared_->done = std::move(done);
    std::thread([shared = shared_, bus] {
        auto opened = std::make_shared<Opened>(open(bus));
        {
            std::lock_guard lock(shared->mutex);
            if (shared->loop) {
                shared->loop->post([shared, opened] {
                    if (auto done = std::exchange(shared->done, nullptr))
                        done(std::move(*opened));
                });
                return;
            }
        }
        // Abandoned: the connection, if any, closes here, off the loop.
    }).detach();
}

Opening::~Opening()
{
    std::lock_guard lock(shared_->mutex);
    shared_->loop = nullptr;
    shared_->done = nullptr;
}

}  // namespace cim::dbus

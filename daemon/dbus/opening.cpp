#include "dbus/opening.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "dbus/control.hpp"
#include "util/thread.hpp"

namespace cim::dbus {

namespace {

std::string bus_words(config::Bus bus)
{
    return bus == config::Bus::system ? "system" : "session";
}

Opened open(config::Bus bus, const Preparation& prepare)
{
    Opened opened;
    try {
        opened.connection =
            bus == config::Bus::system ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
    } catch (const sdbus::Error& e) {
        opened.error = "cannot connect to the " + bus_words(bus) + " bus: " + e.getMessage();
        return opened;
    }
    try {
        opened.slots = prepare(*opened.connection);
    } catch (const sdbus::Error& e) {
        opened.error = e.getMessage();
        opened.connection.reset();
    }
    return opened;
}

}  // namespace

Preparation owning_leaf_name(config::Bus bus)
{
    return [which = bus_words(bus)](sdbus::IConnection& connection) -> std::vector<sdbus::Slot> {
        try {
            connection.requestName(bus_name);
            return {};
        } catch (const sdbus::Error& e) {
            const std::string message = e.getMessage();
            // sd_bus_request_name: EEXIST when another owner has it, EACCES
            // when the bus policy forbids it.
            if (message.find("File exists") != std::string::npos)
                throw sdbus::Error(e.getName(),
                    std::string(bus_name) + " is already owned on the " + which + " bus: is another cim-leaf running?");
            if (e.getName() == "org.freedesktop.DBus.Error.AccessDenied" ||
                message.find("ermission denied") != std::string::npos)
                throw sdbus::Error(e.getName(),
                    "the " + which + " bus policy does not let this user own " + bus_name +
                        " (org.cim.Leaf1.conf allows only user cim-leaf): " + message);
            throw sdbus::Error(
                e.getName(), std::string("cannot own ") + bus_name + " on the " + which + " bus: " + message);
        }
    };
}

struct Opening::Shared {
    std::mutex mutex;
    EventLoop* loop = nullptr;  // under mutex; null once abandoned
    std::function<void(Opened)> done;  // on the loop thread only
};

Opening::Opening(EventLoop& loop, config::Bus bus, Preparation prepare, std::function<void(Opened)> done)
    : shared_(std::make_shared<Shared>())
{
    shared_->loop = &loop;
    shared_->done = std::move(done);
    util::start_thread<std::thread>("the D-Bus connection's thread",
        [shared = shared_, bus, prepare = std::move(prepare)] {
            auto opened = std::make_shared<Opened>(open(bus, prepare));
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
        })
        .detach();
}

Opening::~Opening()
{
    std::lock_guard lock(shared_->mutex);
    shared_->loop = nullptr;
    shared_->done = nullptr;
}

ExternalIo drive(EventLoop& loop, sdbus::IConnection& connection, std::function<void()> process)
{
    return loop.drive(
        connection.getEventLoopPollData().fd,
        [&connection]() -> IoWants {
            try {
                const auto poll = connection.getEventLoopPollData();
                return {static_cast<std::uint32_t>(poll.events), poll.timeout_usec};
            } catch (const sdbus::Error&) {
                return {POLLIN, 0};  // at once: process() finds out what broke
            }
        },
        std::move(process));
}

void close(std::unique_ptr<sdbus::IConnection>& connection)
{
    if (!connection)
        return;
    try {
        shutdown(connection->getEventLoopPollData().fd, SHUT_RDWR);
    } catch (const sdbus::Error&) {
        // Closed already: sd-bus has let go of the socket.
    }
    connection.reset();
}

}  // namespace cim::dbus

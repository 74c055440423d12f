#include "dbus/bus.hpp"

#include <cstdint>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "dbus/leaf_object.hpp"

namespace cim::dbus {

namespace {

std::unique_ptr<sdbus::IConnection> open(config::Bus bus)
{
    const char* which = bus == config::Bus::system ? "system" : "session";
    std::unique_ptr<sdbus::IConnection> connection;
    try {
        connection =
            bus == config::Bus::system ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
    } catch (const sdbus::Error& e) {
        throw std::runtime_error(std::string("cannot connect to the ") + which + " bus: " + e.getMessage());
    }
    try {
        connection->requestName(bus_name);
    } catch (const sdbus::Error& e) {
        const std::string message = e.getMessage();
        // sd_bus_request_name: EEXIST when another owner has it, EACCES when
        // the bus policy forbids it.
        if (message.find("File exists") != std::string::npos)
            throw std::runtime_error(
                std::string(bus_name) + " is already owned on the " + which + " bus: is another cim-leaf running?");
        if (e.getName() == "org.freedesktop.DBus.Error.AccessDenied" ||
            message.find("ermission denied") != std::string::npos)
            throw std::runtime_error(std::string("the ") + which + " bus policy does not let this user own " +
                bus_name + " (org.cim.Leaf1.conf allows only user cim-leaf): " + message);
        throw std::runtime_error(std::string("cannot own ") + bus_name + " on the " + which + " bus: " + message);
    }
    return connection;
}

}  // namespace

Bus::Bus(EventLoop& loop, config::Bus bus, Control& control, std::function<void(const std::string&)> lost)
    : connection_(open(bus)), object_(std::make_unique<LeafObject>(*connection_, control)), lost_(std::move(lost))
{
    const auto poll = connection_->getEventLoopPollData();
    sd_event_source* io = nullptr;
    sd_event_source* timer = nullptr;
    int r = sd_event_add_io(loop.get(), &io, poll.fd, static_cast<std::uint32_t>(poll.events), on_io, this);
    if (r >= 0) {
        io_ = EventSource(io);
        r = sd_event_source_set_prepare(io, on_prepare);
    }
    if (r >= 0) {
        r = sd_event_add_time(loop.get(), &timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_time, this);
        timer_ = EventSource(timer);
    }
    if (r < 0)
        throw std::runtime_error("cannot attach the D-Bus connection to the event loop");
}

// Closing the connection releases the name; asking for it explicitly would
// throw when the bus is already gone.
Bus::~Bus() = default;

void Bus::changed(const LiveState& before, const LiveState& after)
{
    object_->changed(before, after);
}

int Bus::on_io(sd_event_source*, int, std::uint32_t, void* self)
{
    static_cast<Bus*>(self)->process();
    return 0;
}

int Bus::on_time(sd_event_source*, std::uint64_t, void* self)
{
    static_cast<Bus*>(self)->process();
    return 0;
}

int Bus::on_prepare(sd_event_source*, void* self)
{
    static_cast<Bus*>(self)->prepare();
    return 0;
}

void Bus::process()
{
    try {
        while (connection_->processPendingRequest()) { }
    } catch (const sdbus::Error& e) {
        // The bus went away (dbus-daemon restarted): nothing to serve on.
        io_ = EventSource();
        timer_ = EventSource();
        lost_(e.getMessage());
    }
}

// Before each poll: what sd-bus wants to wait for now (POLLOUT while it has
// unsent messages) and its next timeout (method call replies).
void Bus::prepare()
{
    const auto poll = connection_->getEventLoopPollData();
    sd_event_source_set_io_events(io_.get(), static_cast<std::uint32_t>(poll.events));
    if (poll.timeout_usec == UINT64_MAX) {
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    } else {
        sd_event_source_set_time(timer_.get(), poll.timeout_usec);
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_ONESHOT);
    }
}

}  // namespace cim::dbus

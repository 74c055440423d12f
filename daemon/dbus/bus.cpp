#include "dbus/bus.hpp"

#include <poll.h>

#include <algorithm>
#include <cstdint>

#include <spdlog/spdlog.h>

#include "dbus/leaf_object.hpp"
#include "dbus/opening.hpp"

namespace cim::dbus {

Bus::Bus(EventLoop& loop, config::Bus bus, Control& control, Handlers handlers)
    : loop_(loop), control_(control), handlers_(std::move(handlers)),
      which_(bus == config::Bus::system ? "system" : "session")
{
    opening_ = std::make_unique<Opening>(loop, bus, owning_leaf_name(bus), [this](Opened opened) {
        start_deadline_ = EventSource();
        opening_.reset();
        if (opened.connection)
            adopt(std::move(opened.connection));
        else
            handlers_.failed(opened.error);
    });
    start_deadline_ = loop.after(start_bound, [this] {
        opening_.reset();
        handlers_.failed(
            fmt::format("the {} bus did not answer within {} s (connecting, authenticating, requesting {})", which_,
                start_bound.count(), bus_name));
    });
}

Bus::~Bus()
{
    disconnect();
}

void Bus::adopt(std::unique_ptr<sdbus::IConnection> connection)
{
    connection_ = std::move(connection);
    try {
        object_ = std::make_unique<LeafObject>(*connection_, control_);
        io_ = drive(loop_, *connection_, [this] { process(); });
    } catch (const sdbus::Error& e) {
        disconnect();
        handlers_.failed(std::string("cannot serve ") + object_path + " on the " + which_ + " bus: " + e.getMessage());
        return;
    }
    handlers_.owned();
}

void Bus::disconnect()
{
    io_ = ExternalIo();
    object_.reset();
    close(connection_);
}

void Bus::changed(const LiveState& before, const LiveState& after)
{
    if (!object_)
        return;  // not serving (yet, or any more)
    for (auto& name : LeafObject::changed_properties(before, after)) {
        if (std::find(pending_.begin(), pending_.end(), name) == pending_.end())
            pending_.push_back(std::move(name));
    }
    if (pending_.empty())
        return;
    if (!backed_up()) {
        emit_pending();
    } else if (!holding_back_) {
        holding_back_ = true;
        spdlog::warn("the {} bus is not reading what the daemon sends (hung?); PropertiesChanged is held back, "
                     "and merged, until it does",
            which_);
    }
}

void Bus::process()
{
    try {
        while (connection_->processPendingRequest()) { }
    } catch (const sdbus::Error& e) {
        // The bus went away (dbus-daemon restarted): nothing to serve on.
        disconnect();
        handlers_.lost(e.getMessage());
        return;
    }
    if (holding_back_ && !backed_up()) {
        holding_back_ = false;
        spdlog::info("the {} bus reads again", which_);
        emit_pending();
    }
}

// sd-bus queues a message only when the socket takes no more: the bus has
// not read the megabytes before it. Queueing more would only grow memory
// (sd-bus allows 384k messages) with news that is stale when it arrives.
bool Bus::backed_up() const
{
    try {
        return (connection_->getEventLoopPollData().events & POLLOUT) != 0;
    } catch (const sdbus::Error&) {
        return false;
    }
}

void Bus::emit_pending()
{
    object_->emit_changed(pending_);
    pending_.clear();
}

}  // namespace cim::dbus

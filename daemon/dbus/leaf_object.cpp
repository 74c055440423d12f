#include "dbus/leaf_object.hpp"

#include <cstdint>

#include <spdlog/spdlog.h>

#include "health.hpp"
#include "util/text.hpp"
#include "version.hpp"

namespace cim::dbus {

LeafObject::LeafObject(sdbus::IConnection& connection, Control& control)
    : AdaptorInterfaces(connection, object_path), control_(control)
{
    registerAdaptor();
}

LeafObject::~LeafObject()
{
    unregisterAdaptor();
}

std::vector<std::string> LeafObject::changed_properties(const LiveState& before, const LiveState& after)
{
    // HeartbeatsSent changes every beat and is marked EmitsChangedSignal=false.
    std::vector<std::string> names;
    if (before.node_id != after.node_id)
        names.emplace_back("NodeId");
    if (before.state != after.state)
        names.emplace_back("State");
    if (health_status(before) != health_status(after))
        names.emplace_back("Healthy");
    if (before.nats_connected != after.nats_connected)
        names.emplace_back("NatsConnected");
    if (before.nats_server != after.nats_server)
        names.emplace_back("NatsServer");
    if (before.reconnects != after.reconnects)
        names.emplace_back("Reconnects");
    if (before.last_error != after.last_error)
        names.emplace_back("LastError");
    if (before.events.pending != after.events.pending)
        names.emplace_back("EventsPending");
    if (before.events.dropped != after.events.dropped)
        names.emplace_back("EventsDropped");
    if ((before.uplink.state == "up") != (after.uplink.state == "up"))
        names.emplace_back("UplinkConnected");
    if (units::in_trouble(before.units.units) != units::in_trouble(after.units.units))
        names.emplace_back("FailedUnits");
    return names;
}

void LeafObject::emit_changed(const std::vector<std::string>& names)
{
    // A failed signal must not escape into the event loop and end the daemon;
    // readers still get every property by asking.
    try {
        emitPropertiesChangedSignal(interface_name, names);
    } catch (const sdbus::Error& e) {
        if (!emit_failure_logged_)
            spdlog::warn("cannot emit PropertiesChanged on D-Bus: {} (logged once)", e.what());
        emit_failure_logged_ = true;
    }
}

std::string LeafObject::GetHealth()
{
    return control_.health_json();  // JSON dumped with invalid UTF-8 replaced already
}

std::string LeafObject::Ping()
{
    return "pong";
}

void LeafObject::Reload()
{
    if (auto error = control_.reload())
        throw sdbus::Error("org.cim.Leaf1.Error.ReloadFailed", util::to_valid_utf8(*error));
}

std::string LeafObject::NodeId()
{
    return util::to_valid_utf8(control_.live().node_id);
}

std::string LeafObject::Version()
{
    return version_string;
}

std::string LeafObject::State()
{
    return std::string(to_string(control_.live().state));
}

bool LeafObject::Healthy()
{
    return health_status(control_.live()) == "ok";
}

bool LeafObject::NatsConnected()
{
    return control_.live().nats_connected;
}

std::string LeafObject::NatsServer()
{
    return util::to_valid_utf8(control_.live().nats_server);
}

uint64_t LeafObject::HeartbeatsSent()
{
    return control_.live().heartbeats_sent;
}

uint32_t LeafObject::Reconnects()
{
    return control_.live().reconnects;
}

uint64_t LeafObject::EventsPending()
{
    return control_.live().events.pending;
}

uint64_t LeafObject::EventsDropped()
{
    return control_.live().events.dropped;
}

bool LeafObject::UplinkConnected()
{
    return control_.live().uplink.state == "up";
}

std::vector<std::string> LeafObject::FailedUnits()
{
    std::vector<std::string> names;
    for (const auto& name : units::in_trouble(control_.live().units.units))
        names.push_back(util::to_valid_utf8(name));  // systemd's names are ASCII; a glob's match is what it sent
    return names;
}

std::string LeafObject::LastError()
{
    return util::to_valid_utf8(control_.live().last_error);
}

}  // namespace cim::dbus

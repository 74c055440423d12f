#pragma once

#include <cstdint>

#include <sdbus-c++/sdbus-c++.h>

#include "dbus/control.hpp"
#include "org.cim.Leaf1.adaptor.h"

namespace cim::dbus {

// /org/cim/Leaf1: the org.cim.Leaf1 interface (adaptor generated from
// proto/org.cim.Leaf1.xml) answered from the daemon's live state. Strings
// that carry text from outside (NATS servers, paths, host names) go out
// through util::to_valid_utf8: sd-bus refuses anything that is not UTF-8.
class LeafObject final : public sdbus::AdaptorInterfaces<org::cim::Leaf1_adaptor, sdbus::Properties_adaptor> {
public:
    LeafObject(sdbus::IConnection& connection, Control& control);
    ~LeafObject();

    // The properties that differ, by name, for PropertiesChanged.
    static std::vector<std::string> changed_properties(const LiveState& before, const LiveState& after);

    // One PropertiesChanged with the current values of `names`.
    void emit_changed(const std::vector<std::string>& names);

private:
    std::string GetHealth() override;
    std::string Ping() override;
    void Reload() override;

    std::string NodeId() override;
    std::string Version() override;
    std::string State() override;
    bool Healthy() override;
    bool NatsConnected() override;
    std::string NatsServer() override;
    uint64_t HeartbeatsSent() override;
    uint32_t Reconnects() override;
    std::string LastError() override;
    uint64_t EventsPending() override;
    uint64_t EventsDropped() override;
    bool UplinkConnected() override;
    std::vector<std::string> FailedUnits() override;

    Control& control_;
    bool emit_failure_logged_ = false;
};

}  // namespace cim::dbus

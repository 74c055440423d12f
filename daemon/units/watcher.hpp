#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <sdbus-c++/sdbus-c++.h>

#include "config/config.hpp"
#include "event_loop.hpp"
#include "units/unit.hpp"

namespace cim::dbus {
class Opening;
struct Opened;
}  // namespace cim::dbus

namespace cim::units {

// What the watcher knows.
struct Watch {
    bool watching = false;  // subscribed to systemd on the system bus
    std::string reason;  // why not, in words
    std::vector<Unit> units;  // by name
};

// Watches systemd units over the system bus, from the daemon's loop, without
// polling: Subscribe, the units' PropertiesChanged, UnitNew and UnitRemoved
// for globs, a fresh read after `systemctl daemon-reload` and when systemd
// comes back on the bus (daemon-reexec). A lost bus is connected to again,
// and everything read afresh. Its own connection, whatever dbus.bus says: it
// reads unit state, which needs no privilege and no name of its own.
class Watcher {
public:
    Watcher(EventLoop& loop, config::WatchConfig settings, std::function<void()> changed);
    ~Watcher();
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    Watch state() const;

private:
    using Properties = std::map<std::string, sdbus::Variant>;

    void open();
    void adopt(dbus::Opened opened);
    void drop();
    void lose(const std::string& why);
    void process();
    void flush();
    void read_all();
    void list(const std::vector<std::string>& patterns, bool complete);
    void start_tracking(Unit& unit, const std::string& name);
    void track(const std::string& name);
    void read_properties(const std::string& name);
    void read(const std::string& name, const char* interface);
    void apply(const std::string& name, const std::string& interface, const Properties& properties);
    void on_properties_changed(sdbus::Message& message);
    void on_manager_signal(sdbus::Message& message);
    void on_systemd_owner(sdbus::Message& message);
    bool named(const std::string& name) const;  // in watch.units by its name, not a glob

    EventLoop& loop_;
    config::WatchConfig settings_;
    std::function<void()> changed_;
    std::unique_ptr<dbus::Opening> opening_;
    EventSource retry_;
    std::chrono::seconds retry_delay_{1};

    // Released in reverse: proxies and matches before their connection.
    std::unique_ptr<sdbus::IConnection> connection_;
    ExternalIo io_;
    std::vector<sdbus::Slot> slots_;
    std::unique_ptr<sdbus::IProxy> manager_;
    std::map<std::string, std::unique_ptr<sdbus::IProxy>> proxies_;  // by unit name

    std::map<std::string, Unit> units_;  // by name
    std::map<std::string, std::string> names_;  // unit name by object path
    std::set<std::string> unreadable_;  // a read failed, and was logged
    bool watching_ = false;
    std::string reason_ = "connecting to the system bus";
    bool logged_ = false;  // reason_ has been logged
    bool dirty_ = false;  // units_ changed while processing
};

}  // namespace cim::units

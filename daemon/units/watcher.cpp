#include "units/watcher.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>

#include "dbus/opening.hpp"

namespace cim::units {

namespace {

constexpr const char* systemd = "org.freedesktop.systemd1";
constexpr const char* manager_path = "/org/freedesktop/systemd1";
constexpr const char* manager_interface = "org.freedesktop.systemd1.Manager";
constexpr const char* unit_interface = "org.freedesktop.systemd1.Unit";
constexpr const char* service_interface = "org.freedesktop.systemd1.Service";
constexpr const char* properties_interface = "org.freedesktop.DBus.Properties";
// systemd answers within milliseconds; a busy one (a transaction of
// thousands of jobs) within seconds.
constexpr std::chrono::seconds call_timeout{5};
constexpr std::chrono::seconds longest_retry{30};

// ListUnitsByPatterns: name, description, load, active and sub state,
// followed unit, object path, job id, type and path.
using Listed = sdbus::Struct<std::string, std::string, std::string, std::string, std::string, std::string,
    sdbus::ObjectPath, std::uint32_t, std::string, sdbus::ObjectPath>;

bool glob(const std::string& pattern)
{
    return pattern.find_first_of("*?[") != std::string::npos;
}

template <typename T> bool take(const std::map<std::string, sdbus::Variant>& properties, const char* name, T& into)
{
    const auto found = properties.find(name);
    if (found == properties.end() || !found->second.containsValueOfType<T>())
        return false;
    into = found->second.get<T>();
    return true;
}

// The matches, and systemd's promise to send unit signals at all (it sends
// them only to subscribers). On the opening thread: each waits for the bus.
// `watcher` is only captured: the matches run on the loop, once it owns the
// connection. The bus sends only what they ask for, so they ask narrowly:
// the named units' paths (a glob can only take every unit's), UnitNew and
// UnitRemoved only for globs, never the jobs of every start and stop.
std::vector<sdbus::Slot> prepare(sdbus::IConnection& connection, const std::vector<std::string>& patterns,
    Watcher* watcher, void (Watcher::*on_properties)(sdbus::Message&), void (Watcher::*on_manager)(sdbus::Message&),
    void (Watcher::*on_owner)(sdbus::Message&))
{
    std::vector<sdbus::Slot> slots;
    auto add = [&](const std::string& rule, void (Watcher::*handler)(sdbus::Message&)) {
        slots.push_back(
            connection.addMatch(rule, [watcher, handler](sdbus::Message& message) { (watcher->*handler)(message); }));
    };
    const std::string properties =
        "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.DBus.Properties',"
        "member='PropertiesChanged',";
    const std::string manager = "type='signal',sender='org.freedesktop.systemd1',"
                                "interface='org.freedesktop.systemd1.Manager',path='/org/freedesktop/systemd1',";
    const bool globs = std::any_of(patterns.begin(), patterns.end(), glob);
    if (globs) {
        add(properties + "path_namespace='/org/freedesktop/systemd1/unit'", on_properties);
        add(manager + "member='UnitNew'", on_manager);
        add(manager + "member='UnitRemoved'", on_manager);
    } else {
        for (const auto& name : patterns)
            add(properties + "path='" + object_path(name) + "'", on_properties);
    }
    add(manager + "member='Reloading'", on_manager);
    add("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',"
        "arg0='org.freedesktop.systemd1'",
        on_owner);
    try {
        sdbus::createProxy(connection, systemd, manager_path)
            ->callMethod("Subscribe")
            .onInterface(manager_interface)
            .withTimeout(call_timeout);
    } catch (const sdbus::Error& e) {
        throw sdbus::Error(e.getName(), "systemd does not answer on the system bus: " + e.getMessage());
    }
    return slots;
}

}  // namespace

Watcher::Watcher(EventLoop& loop, config::WatchConfig settings, std::function<void()> changed)
    : loop_(loop), settings_(std::move(settings)), changed_(std::move(changed))
{
    for (const auto& pattern : settings_.units)
        if (!glob(pattern))
            track(pattern);
    open();
}

Watcher::~Watcher()
{
    drop();
}

Watch Watcher::state() const
{
    Watch watch{watching_, reason_, {}};
    for (const auto& [name, unit] : units_)
        watch.units.push_back(unit);
    return watch;
}

void Watcher::open()
{
    opening_ = std::make_unique<dbus::Opening>(
        loop_, config::Bus::system,
        [this, patterns = settings_.units](sdbus::IConnection& connection) {
            return prepare(connection, patterns, this, &Watcher::on_properties_changed, &Watcher::on_manager_signal,
                &Watcher::on_systemd_owner);
        },
        [this](dbus::Opened opened) {
            opening_.reset();
            if (opened.connection)
                adopt(std::move(opened));
            else
                lose(opened.error);
        });
}

void Watcher::adopt(dbus::Opened opened)
{
    connection_ = std::move(opened.connection);
    slots_ = std::move(opened.slots);
    manager_ = sdbus::createProxy(*connection_, systemd, manager_path);
    io_ = dbus::drive(loop_, *connection_, [this] { process(); });
    if (!reason_.empty() && logged_)
        spdlog::info("watching units again");
    logged_ = false;
    watching_ = true;
    reason_.clear();
    retry_delay_ = std::chrono::seconds(1);
    dirty_ = true;
    read_all();
    flush();
}

void Watcher::drop()
{
    proxies_.clear();
    manager_.reset();
    slots_.clear();
    io_ = ExternalIo();
    dbus::close(connection_);
}

// The bus went away, or could not be reached: connect again, less often the
// longer it takes. What the units were stays, marked as not watched.
void Watcher::lose(const std::string& why)
{
    drop();
    if (!logged_ || why != reason_)
        spdlog::warn("cannot watch units: {}; trying again", why);
    logged_ = true;
    watching_ = false;
    reason_ = why;
    dirty_ = false;
    changed_();
    retry_ = loop_.after(retry_delay_, [this] {
        retry_ = EventSource();
        open();
    });
    retry_delay_ = std::min(retry_delay_ * 2, longest_retry);
}

void Watcher::process()
{
    try {
        while (connection_->processPendingRequest()) { }
    } catch (const sdbus::Error& e) {
        lose("lost the system bus: " + e.getMessage());
        return;
    }
    flush();
}

// One change for all that one wake-up brought: systemd sends a service's
// Service and Unit properties as two signals, one after the other.
void Watcher::flush()
{
    if (!dirty_)
        return;
    dirty_ = false;
    changed_();
}

// Named units are read whatever state they are in. Units a glob takes are
// those systemd has loaded: ListUnitsByPatterns loads nothing, while reading
// a unit's properties loads it. So an inactive one, which systemd unloads
// again when nothing needs it, is never read: each read would load it again,
// announce it (UnitNew), and so on.
void Watcher::read_all()
{
    std::vector<std::string> globs;
    for (const auto& pattern : settings_.units)
        if (glob(pattern))
            globs.push_back(pattern);
        else
            track(pattern);
    if (!globs.empty())
        list(globs, true);
}

// Takes the loaded units that match `patterns`; `complete`: these are all
// the globs, so a unit a glob took that is not listed has been unloaded.
void Watcher::list(const std::vector<std::string>& patterns, bool complete)
{
    manager_->callMethodAsync("ListUnitsByPatterns")
        .onInterface(manager_interface)
        .withTimeout(call_timeout)
        .withArguments(std::vector<std::string>{}, patterns)
        .uponReplyInvoke([this, complete](const sdbus::Error* error, std::vector<Listed> listed) {
            if (error) {
                spdlog::warn("cannot list the units matching watch.units: {}", error->getMessage());
                return;
            }
            std::set<std::string> loaded;
            for (const auto& entry : listed) {
                const std::string& name = entry.get<0>();
                loaded.insert(name);
                auto [unit, added] = units_.try_emplace(name);
                if (added)
                    start_tracking(unit->second, name);
                Unit& known = unit->second;
                const Unit before = known;
                known.load_state = entry.get<2>();
                known.active_state = entry.get<3>();
                known.sub_state = entry.get<4>();
                dirty_ = dirty_ || known != before;
                if (known.active_state != "inactive")
                    read_properties(name);
            }
            if (!complete)
                return;
            std::erase_if(units_, [&](const auto& entry) {
                const bool gone = !named(entry.first) && !loaded.contains(entry.first);
                if (gone) {
                    names_.erase(object_path(entry.first));
                    proxies_.erase(entry.first);
                    dirty_ = true;
                }
                return gone;
            });
        });
}

void Watcher::start_tracking(Unit& unit, const std::string& name)
{
    unit.name = name;
    unit.critical = matches(settings_.critical, name);
    names_.emplace(object_path(name), name);
    dirty_ = true;
}

// Watches the named unit `name` from now on, and reads its state.
void Watcher::track(const std::string& name)
{
    auto [unit, added] = units_.try_emplace(name);
    if (added)
        start_tracking(unit->second, name);
    if (connection_)
        read_properties(name);
}

void Watcher::read_properties(const std::string& name)
{
    read(name, unit_interface);
    if (name.ends_with(".service"))
        read(name, service_interface);
}

void Watcher::read(const std::string& name, const char* interface)
{
    auto& proxy = proxies_[name];
    if (!proxy)
        proxy = sdbus::createProxy(*connection_, systemd, object_path(name));
    proxy->callMethodAsync("GetAll")
        .onInterface(properties_interface)
        .withTimeout(call_timeout)
        .withArguments(std::string(interface))
        .uponReplyInvoke([this, name, interface = std::string(interface)](
                             const sdbus::Error* error, std::map<std::string, sdbus::Variant> properties) {
            if (!error) {
                unreadable_.erase(name);
                apply(name, interface, properties);
            } else if (unreadable_.insert(name).second) {
                spdlog::warn("cannot read the state of {}: {}", name, error->getMessage());
            }
        });
}

void Watcher::apply(const std::string& name, const std::string& interface, const Properties& properties)
{
    const auto found = units_.find(name);
    if (found == units_.end())
        return;
    Unit& unit = found->second;
    const Unit before = unit;
    if (interface == unit_interface) {
        take(properties, "LoadState", unit.load_state);
        take(properties, "ActiveState", unit.active_state);
        take(properties, "SubState", unit.sub_state);
        if (std::uint64_t usec = 0; take(properties, "StateChangeTimestamp", usec))
            unit.since = std::chrono::system_clock::time_point(std::chrono::microseconds(usec));
    } else if (interface == service_interface) {
        take(properties, "Result", unit.result);
        take(properties, "NRestarts", unit.restarts);
        if (std::int32_t code = 0; take(properties, "ExecMainCode", code))
            unit.exit_code = exit_code_words(code);
        take(properties, "ExecMainStatus", unit.exit_status);
    }
    if (unit != before)
        dirty_ = true;
}

void Watcher::on_properties_changed(sdbus::Message& message)
{
    const auto name = names_.find(message.getPath());
    if (name == names_.end())
        return;
    try {
        std::string interface;
        Properties changed;
        message >> interface >> changed;
        // What is read here systemd sends with its value; what it only
        // invalidates is not read here, so reading never loads a unit.
        apply(name->second, interface, changed);
    } catch (const sdbus::Error& e) {
        spdlog::warn("a PropertiesChanged of {} not as systemd sends it: {}", name->second, e.getMessage());
    }
}

void Watcher::on_manager_signal(sdbus::Message& message)
{
    try {
        const std::string member = message.getMemberName();
        if (member == "UnitNew") {
            std::string name;
            message >> name;
            if (!units_.contains(name) && matches(settings_.units, name))
                list({name}, false);
        } else if (member == "UnitRemoved") {
            // Unloaded: stopped and needed by nothing. A unit named in
            // watch.units stays, in its last state; one a glob took goes.
            std::string name;
            message >> name;
            if (units_.contains(name) && !named(name)) {
                units_.erase(name);
                names_.erase(object_path(name));
                proxies_.erase(name);
                dirty_ = true;
            }
        } else if (member == "Reloading") {
            bool reloading = false;
            message >> reloading;
            if (!reloading)
                read_all();  // daemon-reload may have added, changed or removed units
        }
    } catch (const sdbus::Error& e) {
        spdlog::warn("a systemd signal not as systemd sends it: {}", e.getMessage());
    }
}

// systemd left the bus and came back (daemon-reexec, or the bus restarted
// under it): subscribe again, and read everything afresh.
void Watcher::on_systemd_owner(sdbus::Message& message)
{
    try {
        std::string name, old_owner, new_owner;
        message >> name >> old_owner >> new_owner;
        if (new_owner.empty())
            return;
        manager_->callMethodAsync("Subscribe")
            .onInterface(manager_interface)
            .withTimeout(call_timeout)
            .uponReplyInvoke([](const sdbus::Error* error) {
                // After daemon-reexec systemd keeps its subscribers.
                if (error && error->getName() != "org.freedesktop.systemd1.AlreadySubscribed")
                    spdlog::warn("cannot subscribe to systemd again: {}", error->getMessage());
            });
        read_all();
    } catch (const sdbus::Error& e) {
        spdlog::warn("a NameOwnerChanged not as the bus sends it: {}", e.getMessage());
    }
}

bool Watcher::named(const std::string& name) const
{
    return std::find(settings_.units.begin(), settings_.units.end(), name) != settings_.units.end();
}

}  // namespace cim::units

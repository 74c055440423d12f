#include "dbus/status_command.hpp"

#include <chrono>
#include <cstdint>
#include <iostream>

#include <nlohmann/json.hpp>
#include <sdbus-c++/sdbus-c++.h>

#include "dbus/control.hpp"

namespace cim::dbus {

namespace {

std::string duration_words(std::int64_t seconds)
{
    const std::int64_t days = seconds / 86400, hours = seconds / 3600 % 24, minutes = seconds / 60 % 60;
    std::string out;
    if (days)
        out += std::to_string(days) + "d ";
    if (days || hours)
        out += std::to_string(hours) + "h ";
    if (days || hours || minutes)
        out += std::to_string(minutes) + "m ";
    return out + std::to_string(seconds % 60) + "s";
}

void print_summary(const nlohmann::json& health)
{
    const auto nats = health.value("checks", nlohmann::json::object()).value("nats", nlohmann::json::object());
    const std::string server = nats.value("server", "");
    const std::string last_error = health.value("last_error", "");
    std::cout << "cim-leaf " << health.value("node", "?") << " (" << health.value("version", "?")
              << "): " << health.value("state", "?") << ", " << health.value("status", "?") << "\n"
              << "  NATS:       " << (server.empty() ? "not connected" : server) << ", " << nats.value("reconnects", 0)
              << " reconnects, " << nats.value("events_dropped", 0) << " events dropped\n"
              << "  Uptime:     " << duration_words(health.value("uptime_s", std::int64_t{0})) << "\n"
              << "  Heartbeats: " << health.value("heartbeats_sent", std::uint64_t{0}) << " sent\n"
              << "  Last error: " << (last_error.empty() ? "none" : last_error) << "\n";
}

}  // namespace

int status_command(const cli::Status& options)
{
    const char* which = options.bus == config::Bus::system ? "system" : "session";
    std::string reply;
    try {
        auto connection = options.bus == config::Bus::system ? sdbus::createSystemBusConnection()
                                                             : sdbus::createSessionBusConnection();
        auto proxy = sdbus::createProxy(*connection, bus_name, object_path);
        proxy->callMethod("GetHealth")
            .onInterface(interface_name)
            .withTimeout(std::chrono::seconds(5))
            .storeResultsTo(reply);
    } catch (const sdbus::Error& e) {
        const bool absent = e.getName() == "org.freedesktop.DBus.Error.ServiceUnknown" ||
            e.getName() == "org.freedesktop.DBus.Error.NameHasNoOwner";
        std::cerr << "cim-leaf status: "
                  << (absent ? std::string("cim-leaf is not running (nobody owns ") + bus_name + " on the " + which +
                                 " bus)"
                             : std::string("no answer from ") + bus_name + " on the " + which +
                                 " bus: " + e.getMessage())
                  << "\n";
        return cli::exit_not_running;
    }
    if (options.json) {
        std::cout << reply << "\n";
        return 0;
    }
    const auto health = nlohmann::json::parse(reply, nullptr, false);
    if (health.is_discarded() || !health.is_object()) {
        std::cerr << "cim-leaf status: the daemon's answer is not JSON\n";
        return 1;
    }
    print_summary(health);
    return 0;
}

}  // namespace cim::dbus

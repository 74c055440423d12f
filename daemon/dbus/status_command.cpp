#include "dbus/status_command.hpp"

#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>
#include <systemd/sd-bus.h>

#include "dbus/control.hpp"
#include "health_words.hpp"
#include "util/text.hpp"

namespace cim::dbus {

namespace {

void print_summary(const nlohmann::json& health)
{
    const auto checks = health.value("checks", nlohmann::json::object());
    const auto nats = checks.value("nats", nlohmann::json::object());
    const std::string server = nats.value("server", "");
    const std::string last_error = health.value("last_error", "");
    std::cout << "cim-leaf " << health.value("node", "?") << " (" << health.value("version", "?")
              << "): " << health.value("state", "?") << ", " << health.value("status", "?") << "\n"
              << "  NATS:       " << (server.empty() ? "not connected" : server) << ", " << nats.value("reconnects", 0)
              << " reconnects\n"
              << "  Events:     " << events_words(checks.value("events", nlohmann::json::object())) << "\n"
              << (checks.contains("uplink") ? "  Uplink:     " + uplink_words(checks["uplink"]) + "\n" : "")
              << (checks.contains("units") ? "  Units:      " + units_words(checks["units"]) + "\n" : "")
              << "  Uptime:     " << util::duration_words(health.value("uptime_s", std::int64_t{0})) << "\n"
              << "  Heartbeats: " << health.value("heartbeats_sent", std::uint64_t{0}) << " sent, "
              << nats.value("heartbeats_refused", std::uint64_t{0}) << " refused\n"
              << "  Last error: " << (last_error.empty() ? "none" : last_error) << "\n";
}

// How long `status` waits for the daemon's answer, the bus's connection
// and authentication included.
constexpr std::chrono::seconds answer_bound{5};

std::uint64_t monotonic_usec()
{
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(now.tv_nsec) / 1000;
}

struct Reply {
    bool done = false;
    std::optional<std::string> health;
    std::string error;  // when there is no health
    bool no_owner = false;  // the error: nobody owns the name
};

int on_reply(sd_bus_message* message, void* userdata, sd_bus_error*)
{
    auto& reply = *static_cast<Reply*>(userdata);
    reply.done = true;
    const char* health = nullptr;
    if (const sd_bus_error* error = sd_bus_message_get_error(message)) {
        reply.no_owner = sd_bus_error_has_names(
            error, "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner");
        reply.error = error->message ? error->message : error->name;
    } else if (const int r = sd_bus_message_read(message, "s", &health); r < 0) {
        reply.error = std::string("unexpected reply: ") + std::strerror(-r);
    } else {
        reply.health = health;
    }
    return 0;
}

// The daemon's health JSON, or why there is none in words.
struct Answer {
    std::optional<std::string> health;
    std::string problem;
};

// GetHealth with one bound on all of it: plain sd-bus driven here, because
// sd_bus_call and sdbus-c++'s connection factories first wait for the bus to
// authenticate the client, which sd-bus allows 90 s.
Answer ask(config::Bus bus)
{
    const std::string which = bus == config::Bus::system ? "system" : "session";
    const std::string bound = std::to_string(answer_bound.count()) + " s";
    const std::uint64_t deadline = monotonic_usec() + std::chrono::microseconds(answer_bound).count();
    Reply reply;
    sd_bus* opened = nullptr;
    int r = bus == config::Bus::system ? sd_bus_open_system(&opened) : sd_bus_open_user(&opened);
    // No flush when closing: the bus may be the one that does not answer.
    std::unique_ptr<sd_bus, decltype(&sd_bus_close_unref)> connection(opened, sd_bus_close_unref);
    if (r >= 0)
        r = sd_bus_call_method_async(
            connection.get(), nullptr, bus_name, object_path, interface_name, "GetHealth", on_reply, &reply, "");
    while (r >= 0 && !reply.done) {
        r = sd_bus_process(connection.get(), nullptr);
        if (r != 0)
            continue;
        const std::uint64_t now = monotonic_usec();
        if (now >= deadline)
            return {std::nullopt,
                sd_bus_is_ready(connection.get()) > 0
                    ? std::string(bus_name) + " did not answer on the " + which + " bus within " + bound
                    : "the " + which + " bus did not answer within " + bound};
        r = sd_bus_wait(connection.get(), deadline - now);
        if (r == -EINTR)
            r = 0;
    }
    if (r < 0)
        return {std::nullopt, "cannot reach the " + which + " bus: " + std::strerror(-r)};
    if (reply.no_owner)
        return {std::nullopt,
            std::string("cim-leaf is not running (nobody owns ") + bus_name + " on the " + which + " bus)"};
    if (!reply.health)
        return {std::nullopt, std::string("no answer from ") + bus_name + " on the " + which + " bus: " + reply.error};
    return {std::move(reply.health), {}};
}

}  // namespace

int status_command(const cli::Status& options)
{
    const Answer answer = ask(options.bus);
    if (!answer.health) {
        std::cerr << "cim-leaf status: " << answer.problem << "\n";
        return cli::exit_not_running;
    }
    const std::string& reply = *answer.health;
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

#include <doctest/doctest.h>

#include "dbus/leaf_object.hpp"
#include "health.hpp"
#include "health_words.hpp"
#include "units/tracker.hpp"
#include "units/unit.hpp"

using namespace cim;
using units::Unit;

namespace {

const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));

Unit running(const std::string& name, bool critical = false)
{
    return {.name = name,
        .load_state = "loaded",
        .active_state = "active",
        .sub_state = "running",
        .result = "success",
        .exit_code = "",
        .critical = critical};
}

Unit failed(Unit unit, const std::string& result = "exit-code", int status = 1)
{
    unit.active_state = "failed";
    unit.sub_state = "failed";
    unit.result = result;
    unit.exit_code = "exited";
    unit.exit_status = status;
    return unit;
}

std::vector<std::string> types(const std::vector<nats::Event>& events)
{
    std::vector<std::string> out;
    for (const auto& event : events)
        out.push_back(event.event_type);
    return out;
}

}  // namespace

TEST_CASE("units: in trouble when failed, waiting to restart after failing, not found or a bad unit file")
{
    CHECK_FALSE(units::in_trouble(running("a.service")));
    CHECK(units::in_trouble(failed(running("a.service"))));
    Unit restarting = running("a.service");
    restarting.active_state = "activating";
    restarting.sub_state = "auto-restart";
    CHECK(units::failing(restarting));
    restarting.sub_state = "auto-restart-queued";  // systemd 254 on
    CHECK(units::failing(restarting));
    Unit stopped = running("a.service");
    stopped.active_state = "inactive";
    stopped.sub_state = "dead";
    CHECK_FALSE(units::in_trouble(stopped));  // stopped on purpose
    for (const char* load : {"not-found", "bad-setting", "error"}) {
        Unit unit = stopped;
        unit.load_state = load;
        CHECK(units::in_trouble(unit));
        CHECK_FALSE(units::failing(unit));
    }
    CHECK(units::in_trouble({running("a.service"), failed(running("b.service")), running("c.service")}) ==
        std::vector<std::string>{"b.service"});
}

TEST_CASE("units: names and globs as systemd matches them, object paths as systemd escapes them")
{
    CHECK(units::matches({"cim-*.service"}, "cim-web.service"));
    CHECK_FALSE(units::matches({"cim-*.service"}, "cim-web.socket"));
    CHECK(units::matches({"nats.service", "cim-?.service"}, "cim-a.service"));
    CHECK_FALSE(units::matches({}, "nats.service"));
    CHECK(units::object_path("nats.service") == "/org/freedesktop/systemd1/unit/nats_2eservice");
    CHECK(units::object_path("cim-leaf@a:b.service") == "/org/freedesktop/systemd1/unit/cim_2dleaf_40a_3ab_2eservice");
    CHECK(units::exit_code_words(1) == "exited");
    CHECK(units::exit_code_words(2) == "killed");
    CHECK(units::exit_code_words(3) == "dumped");
    CHECK(units::exit_code_words(0).empty());
}

TEST_CASE("units: a unit's first known state makes no event; its failure, restart and recovery do")
{
    units::Tracker tracker;
    Unit stub{.name = "a.service"};
    CHECK(tracker.update({stub}, t0).empty());  // systemd has not answered yet
    CHECK(tracker.update({running("a.service")}, t0).empty());  // the daemon's start is no news

    const auto failing = tracker.update({failed(running("a.service"), "signal", 9)}, t0);
    REQUIRE(types(failing) == std::vector<std::string>{"unit_failed"});
    CHECK(failing[0].data["unit"] == "a.service");
    CHECK(failing[0].data["result"] == "signal");
    CHECK(failing[0].data["exit_code"] == "exited");
    CHECK(failing[0].data["exit_status"] == 9);
    CHECK(failing[0].data["critical"] == false);
    CHECK(tracker.update({failed(running("a.service"))}, t0).empty());  // still failed: nothing new

    Unit starting = running("a.service");
    starting.active_state = "activating";
    starting.sub_state = "start";
    CHECK(tracker.update({starting}, t0 + std::chrono::seconds(5)).empty());
    const auto recovered = tracker.update({running("a.service")}, t0 + std::chrono::seconds(7));
    REQUIRE(types(recovered) == std::vector<std::string>{"unit_recovered"});
    CHECK(recovered[0].data["down_s"] == 7);
    CHECK(tracker.update({running("a.service")}, t0 + std::chrono::seconds(8)).empty());
}

TEST_CASE("units: systemd restarting a failed service is a failure, a restart, then a recovery")
{
    units::Tracker tracker;
    tracker.update({running("a.service")}, t0);
    Unit waiting = failed(running("a.service"));
    waiting.active_state = "activating";
    waiting.sub_state = "auto-restart";
    CHECK(types(tracker.update({waiting}, t0)) == std::vector<std::string>{"unit_failed"});
    Unit again = running("a.service");
    again.restarts = 1;
    again.result = "success";
    const auto events = tracker.update({again}, t0 + std::chrono::seconds(1));
    CHECK(types(events) == std::vector<std::string>{"unit_restarted", "unit_recovered"});
    CHECK(events[0].data["restarts"] == 1);
}

TEST_CASE("units: a unit failed when first seen recovers with an event; one that goes away is forgotten")
{
    units::Tracker tracker;
    CHECK(tracker.update({failed(running("a.service")), running("b.service")}, t0).empty());
    CHECK(types(tracker.update({running("a.service"), running("b.service")}, t0)) ==
        std::vector<std::string>{"unit_recovered"});
    tracker.update({running("a.service")}, t0);  // b unloaded (a glob's unit)
    CHECK(tracker.update({running("a.service"), failed(running("b.service"))}, t0).empty());  // first seen again
}

TEST_CASE("health: a watched unit in trouble makes it degraded, a critical one failing; not watching is unknown")
{
    LiveState live;
    live.state = State::connected;
    live.nats_connected = true;
    live.nats_server = "nats://127.0.0.1:4222";
    live.units.watched = true;
    live.units.watching = true;
    live.units.units = {running("a.service"), running("nats.service", true)};
    CHECK(health_status(live) == "ok");
    auto json = health_json(live, t0, std::chrono::steady_clock::now());
    CHECK(json["checks"]["units"]["status"] == "ok");
    CHECK(json["checks"]["units"]["units"].size() == 2);
    CHECK(json["checks"]["units"]["units"][1]["critical"] == true);

    live.units.units[0] = failed(live.units.units[0]);
    live.units.units[0].since = t0;
    CHECK(health_status(live) == "degraded");
    json = health_json(live, t0, std::chrono::steady_clock::now());
    CHECK(json["checks"]["units"]["failed"] == nlohmann::json::array({"a.service"}));
    CHECK(json["checks"]["units"]["units"][0]["status"] == "degraded");
    CHECK(json["checks"]["units"]["units"][0]["since"] == "2027-01-15T08:00:00.000Z");
    CHECK(status_text(live) == "Connected to nats://127.0.0.1:4222; failed units: a.service");

    live.units.units[1] = failed(live.units.units[1]);
    CHECK(health_status(live) == "failing");

    live.units.units = {running("a.service")};
    live.units.watching = false;
    live.units.reason = "cannot connect to the system bus: No such file or directory";
    CHECK(health_status(live) == "degraded");
    json = health_json(live, t0, std::chrono::steady_clock::now());
    CHECK(json["checks"]["units"]["status"] == "unknown");
    CHECK(status_text(live) ==
        "Connected to nats://127.0.0.1:4222; units unknown (cannot connect to the system bus: No "
        "such file or directory)");

    live.units = {};  // watch.units empty: no check at all
    CHECK_FALSE(health_json(live, t0, std::chrono::steady_clock::now())["checks"].contains("units"));
}

TEST_CASE("units in words, as cim-leaf status and cim-leaf fleet say them")
{
    LiveState live;
    live.units.watched = true;
    live.units.watching = true;
    Unit restarting = failed(running("b.service"), "signal", 9);
    restarting.active_state = "activating";
    restarting.sub_state = "auto-restart";
    restarting.exit_code = "killed";
    Unit missing{.name = "c.service", .load_state = "not-found"};
    live.units.units = {running("a.service"), restarting, missing, failed(running("d.service"))};
    const auto check = health_json(live, t0, std::chrono::steady_clock::now())["checks"]["units"];
    CHECK(units_words(check) ==
        "4 watched; in trouble: b.service (restarting: signal, killed 9), c.service (not found), d.service (failed: "
        "exit-code, exited 1)");
    live.units.units = {running("a.service")};
    CHECK(units_words(health_json(live, t0, std::chrono::steady_clock::now())["checks"]["units"]) ==
        "1 watched, none in trouble");
    live.units.watching = false;
    live.units.reason = "lost the system bus";
    CHECK(units_words(health_json(live, t0, std::chrono::steady_clock::now())["checks"]["units"]) ==
        "unknown (lost the system bus)");
}

TEST_CASE("units: FailedUnits changes, for PropertiesChanged, only when the units in trouble do")
{
    LiveState before;
    before.units.units = {running("a.service"), running("b.service")};
    LiveState after = before;
    after.units.units[0].restarts = 1;  // still running: no news for FailedUnits
    CHECK(dbus::LeafObject::changed_properties(before, after).empty());
    after.units.units[1] = failed(after.units.units[1]);
    CHECK(dbus::LeafObject::changed_properties(before, after) == std::vector<std::string>{"FailedUnits"});
}

#include <doctest/doctest.h>

#include "cli.hpp"
#include "config/load.hpp"
#include "health.hpp"
#include "health_snapshot.hpp"
#include "nats/payloads.hpp"
#include "nats/service.hpp"
#include "notify.hpp"
#include "util/json.hpp"
#include "util/text.hpp"
#include "version.hpp"

using namespace cim;

TEST_CASE("sd_notify datagrams")
{
    CHECK(notify_message::ready("Connected") == "READY=1\nSTATUS=Connected");
    CHECK(notify_message::reloading(123456789, "Reloading configuration") ==
        "RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=Reloading configuration");
    CHECK(notify_message::stopping("Stopping") == "STOPPING=1\nSTATUS=Stopping");
    CHECK(notify_message::watchdog() == "WATCHDOG=1");
    // A newline would end STATUS= and start a bogus assignment.
    CHECK(notify_message::status("a\nREADY=1") == "STATUS=a READY=1");
    // systemd ignores a status that is not UTF-8.
    CHECK(notify_message::status("path \xff") == "STATUS=path \xef\xbf\xbd");
}

namespace {

LiveState connected_state()
{
    LiveState live;
    live.node_id = "leaf-01";
    live.domain = "example";
    live.labels = {{"rack", "r1"}};
    live.state = State::connected;
    live.nats_connected = true;
    live.nats_server = "nats://127.0.0.1:4222";
    live.bus = config::Bus::none;
    live.started_steady = std::chrono::steady_clock::now() - std::chrono::seconds(42);
    return live;
}

}  // namespace

TEST_CASE("health: ok when connected, failing without NATS or the D-Bus name, degraded after a recent loss")
{
    LiveState live = connected_state();
    CHECK(health_status(live) == "ok");
    live.events.dropped = 1;  // long ago
    CHECK(health_status(live) == "ok");
    live.event_loss.recent = true;
    CHECK(health_status(live) == "degraded");
    live.event_loss.recent = false;
    live.events.overdue = true;  // the oldest pending event waits too long
    CHECK(health_status(live) == "degraded");
    live.events.overdue = false;
    live.events.problem = "stream CIM_LEAF_EVENTS does not capture cim.leaf.leaf-01.events.>";
    CHECK(health_status(live) == "degraded");
    live.events.problem.clear();
    live.heartbeat_loss.recent = true;
    CHECK(health_status(live) == "degraded");
    live.nats_connected = false;
    CHECK(health_status(live) == "failing");
    live = connected_state();
    live.bus = config::Bus::system;
    CHECK(health_status(live) == "failing");
    live.dbus_name_owned = true;
    CHECK(health_status(live) == "ok");
    live.last_reload_failed = true;
    CHECK(health_status(live) == "degraded");
}

TEST_CASE("health JSON has the envelope and every check")
{
    const LiveState live = connected_state();
    const auto json = health_json(live, std::chrono::system_clock::now(), std::chrono::steady_clock::now());
    CHECK(json["type"] == "io.cim.leaf.v1.health");
    CHECK(json["node"] == "leaf-01");
    CHECK(json["version"] == version_string);
    CHECK(json["uptime_s"] == 42);
    CHECK(json["status"] == "ok");
    for (const char* check : {"nats", "events", "dbus", "systemd", "config"})
        CHECK(json["checks"][check]["status"] == "ok");
    CHECK(json["time"].get<std::string>().back() == 'Z');
}

TEST_CASE("the ready health reply is the one health_json renders, at any time")
{
    using namespace std::chrono_literals;
    LiveState live = connected_state();
    // Strings that look like the stamped keys must stay as they are.
    live.last_error = R"(say "time":"1999" and "uptime_s":7, "oldest_pending_s":-3 \")";
    live.events.pending = 2;
    live.events.oldest_pending = live.started_at + 5s;
    HealthSnapshot snapshot;
    snapshot.update(live);
    for (const auto after : {0s, 1s, 65s, 3601s}) {
        const auto now = live.started_at + after;
        const auto now_steady = live.started_steady + after;
        CHECK(snapshot.json(now, now_steady) == util::dump(health_json(live, now, now_steady)));
    }
    live.events.pending = 0;  // oldest_pending_s is 0 again, however old the last one was
    live.uplink.watched = true;
    snapshot.update(live);
    live.heartbeats_sent = 7;  // a heartbeat: stamped, nothing rendered
    live.last_heartbeat = live.started_at + 95s;
    snapshot.update(live);
    const auto later = live.started_at + 100s;
    CHECK(snapshot.json(later, live.started_steady + 100s) ==
        util::dump(health_json(live, later, live.started_steady + 100s)));
}

TEST_CASE("status text says what the daemon does")
{
    LiveState live = connected_state();
    live.heartbeats_sent = 3;
    CHECK(status_text(live) == "Connected to nats://127.0.0.1:4222");  // no count: a new STATUS= wakes PID 1
    live.state = State::reconnecting;
    live.last_error = "NATS connection lost: EOF";
    CHECK(status_text(live) == "Reconnecting to NATS (NATS connection lost: EOF)");
}

TEST_CASE("heartbeat payload")
{
    const auto json =
        nats::heartbeat_json(connected_state(), 7, std::chrono::system_clock::now(), std::chrono::steady_clock::now());
    CHECK(json["type"] == "io.cim.leaf.v1.heartbeat");
    CHECK(json["seq"] == 7);
    CHECK(json["state"] == "connected");
    CHECK(json["labels"]["rack"] == "r1");
    CHECK(json["domain"] == "example");
}

TEST_CASE("events: a chain shares its correlation id, each names its cause")
{
    const auto first = nats::make_event("reloading");
    CHECK(first.correlation_id == first.event_id);
    CHECK(first.causation_id == first.event_id);
    const auto second = nats::make_event("reloaded", {}, &first);
    CHECK(second.event_id != first.event_id);
    CHECK(second.correlation_id == first.event_id);
    CHECK(second.causation_id == first.event_id);
    CHECK(second.event_id > first.event_id);  // UUIDv7 sorts by time
    const auto json = nats::event_json("leaf-01", 7, second);
    CHECK(json["type"] == "io.cim.leaf.v1.event");
    CHECK(json["event_type"] == "reloaded");
    CHECK(json["event_id"].get<std::string>()[14] == '7');
}

TEST_CASE("the header block counts as nats.c counts it")
{
    CHECK(nats::header_bytes({}) == 0);
    // "NATS/1.0\r\n" "X-Message-ID: abc\r\n" "\r\n"
    CHECK(nats::header_bytes({{"X-Message-ID", "abc"}}) == 10 + 19 + 2);
}

TEST_CASE("an event too big for the server is cut to fit, and says so")
{
    const auto event = nats::make_event("reload_failed",
        {{"config", "/etc/cim-leaf/config.yaml"}, {"errors", std::vector<std::string>(100, std::string(300, 'e'))}});
    const std::string payload = util::dump(nats::event_json("leaf-01", 1, event));
    REQUIRE(payload.size() > 30000);
    CHECK(nats::fit_event(payload, 1 << 20) == payload);  // fits: untouched
    for (std::int64_t limit : {20000, 2048, 600}) {
        CAPTURE(limit);
        const auto fitted = nats::fit_event(payload, limit);
        REQUIRE(fitted);
        CHECK(static_cast<std::int64_t>(fitted->size()) <= limit);
        const auto json = nlohmann::json::parse(*fitted);
        CHECK(json["data"]["truncated"] == true);
        CHECK(json["event_id"] == event.event_id);  // the envelope is whole
        CHECK(json["event_type"] == "reload_failed");
    }
    // Multi-byte characters are never cut in half.
    const auto wide = nats::make_event("reload_failed", {{"errors", {std::string(3000, 'x') + "\xc3\xa9\xc3\xa9"}}});
    for (std::int64_t limit = 500; limit < 700; ++limit) {
        const auto fitted = nats::fit_event(util::dump(nats::event_json("leaf-01", 2, wide)), limit);
        REQUIRE(fitted);
        CHECK_FALSE(util::find_non_text(*fitted));
    }
    CHECK_FALSE(nats::fit_event(payload, 100));  // not even the envelope fits
}

TEST_CASE("$SRV answers with the ADR-32 types")
{
    nats::Service service("leaf-01", {{"health", "cim.leaf.leaf-01.health"}});
    CHECK(service.subjects() == std::vector<std::string>{"$SRV.*", "$SRV.*.cim-leaf", "$SRV.*.cim-leaf.leaf-01"});
    const auto ping = nlohmann::json::parse(service.answer("$SRV.PING").payload);
    CHECK(ping["type"] == "io.nats.micro.v1.ping_response");
    CHECK(ping["metadata"].is_object());
    service.record(0, std::chrono::nanoseconds(1000));
    service.record(0, std::chrono::nanoseconds(3000), "boom");
    const auto stats = nlohmann::json::parse(service.answer("$SRV.STATS.cim-leaf.leaf-01").payload);
    CHECK(stats["endpoints"][0]["num_requests"] == 2);
    CHECK(stats["endpoints"][0]["num_errors"] == 1);
    CHECK(stats["endpoints"][0]["average_processing_time"] == 2000);
    CHECK(nlohmann::json::parse(service.answer("$SRV.INFO.cim-leaf").payload)["endpoints"].size() == 1);
    // A verb ADR-32 does not define: a service error, not silence.
    const auto unknown = service.answer("$SRV.KV.cim-leaf");
    CHECK(unknown.payload.empty());
    CHECK(unknown.headers ==
        nats::Headers{{"Nats-Service-Error", "unknown verb \"KV\": cim-leaf answers PING, INFO and STATS"},
            {"Nats-Service-Error-Code", "400"}});
}

TEST_CASE("command line")
{
    auto parse = [](std::vector<const char*> args) {
        args.insert(args.begin(), "cim-leaf");
        return cli::parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
    };
    CHECK(std::get<cli::Run>(*parse({}).command).config_path == "/etc/cim-leaf/config.yaml");
    CHECK(std::get<cli::Run>(*parse({"--config", "/x.yaml"}).command).config_path == "/x.yaml");
    CHECK(std::get<cli::CheckConfig>(*parse({"--check-config", "--config=/y"}).command).config_path == "/y");
    CHECK(std::get<cli::Run>(*parse({"--log-level", "debug"}).command).log_level == "debug");
    CHECK(std::holds_alternative<cli::PrintSchema>(*parse({"--print-config-schema"}).command));
    const auto status = std::get<cli::Status>(*parse({"status", "--bus", "session", "--json"}).command);
    CHECK(status.bus == config::Bus::session);
    CHECK(status.json);
    CHECK(parse({"--bogus"}).error == "unknown argument: --bogus");
    CHECK(parse({"--config"}).error == "--config needs a value");
    CHECK(parse({"--log-level", "loud"}).error.find("--log-level must be one of") == 0);
    CHECK(parse({"--version", "--check-config"}).error.find("cannot be combined") != std::string::npos);
    CHECK(parse({"status", "--bus", "nope"}).error == "--bus must be system or session, got nope");
}

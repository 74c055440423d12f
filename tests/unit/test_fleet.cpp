#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "cli.hpp"
#include "config/load.hpp"
#include "fleet/expect.hpp"
#include "fleet/report.hpp"
#include "fleet/table.hpp"
#include "fleet/view.hpp"
#include "health.hpp"
#include "util/ids.hpp"
#include "util/text.hpp"

using namespace cim;
using namespace std::chrono_literals;

namespace {

const auto answered_at = *util::parse_rfc3339("2026-11-30T05:31:36.500Z");

// A leaf's health answer, made by the daemon's own payload builder.
struct Answer {
    LiveState live;
    std::chrono::seconds uptime = 3 * 24h + 4h + 5min;

    explicit Answer(std::string node)
    {
        live.node_id = std::move(node);
        live.state = State::connected;
        live.nats_connected = true;
        live.nats_server = "nats://127.0.0.1:4222";
        live.events.delivery = "jetstream";
        live.events.durable = true;
        live.events.stream = "CIM_LEAF_EVENTS";
        live.last_heartbeat = answered_at - 2s;
    }
    std::string text() const
    {
        const auto now = std::chrono::steady_clock::now();
        LiveState copy = live;
        copy.started_steady = now - uptime;
        auto health = health_json(copy, answered_at, now);
        health["version"] = "1.2.3";  // the table does not change with each release
        return health.dump();
    }
};

std::vector<std::string> texts(const std::vector<Answer>& answers)
{
    std::vector<std::string> out;
    for (const auto& answer : answers)
        out.push_back(answer.text());
    return out;
}

Answer degraded(std::string node)
{
    Answer answer(std::move(node));
    answer.live.uplink.watched = true;
    answer.live.uplink.state = "down";
    answer.live.uplink.since = answered_at - 90s;
    answer.live.events.pending = 17;
    answer.live.events.dropped = 2;
    answer.live.events.overdue = true;
    answer.live.events.oldest_pending = answered_at - 125s;
    answer.uptime = 12min + 5s;
    return answer;
}

Answer failing(std::string node)
{
    Answer answer(std::move(node));
    answer.live.bus = config::Bus::system;  // and the name is not owned
    answer.live.last_heartbeat = {};
    answer.uptime = 5s;
    return answer;
}

fleet::Expectation expectation(const char* text)
{
    return std::get<fleet::Expectation>(fleet::parse_expectation(text));
}

}  // namespace

TEST_CASE("--expect: a count, or node ids separated by commas")
{
    CHECK(expectation("3") == fleet::Expectation{3, {}});
    CHECK(expectation("leaf-b,leaf-a") == fleet::Expectation{2, {"leaf-a", "leaf-b"}});
    CHECK(expectation("7,") == fleet::Expectation{1, {"7"}});  // a node named 7, not a count
    CHECK(expectation("leaf-a,") == fleet::Expectation{1, {"leaf-a"}});
    auto error = [](const char* text) { return std::get<std::string>(fleet::parse_expectation(text)); };
    CHECK(error("0") == "--expect needs a count of at least 1, or node ids separated by commas; got \"0\"");
    CHECK(error("-2").find("at least 1") != std::string::npos);
    CHECK(error("") ==
        "--expect: \"\" is not a node id (letters, digits, '_' and '-'); give a count or node ids separated by commas");
    CHECK(error("a,,b").find("\"\" is not a node id") != std::string::npos);
    CHECK(error("leaf.a").find("\"leaf.a\" is not a node id") != std::string::npos);
    CHECK(error("a,\x1b[31m").find("\"\\u001b[31m\" is not a node id") != std::string::npos);
    CHECK(error("a,b,a") == "--expect: node a is given twice");

    CHECK(fleet::met(expectation("2"), {"x", "y"}));
    CHECK_FALSE(fleet::met(expectation("3"), {"x", "y"}));
    CHECK(fleet::met(expectation("a,b"), {"a", "b", "c"}));
    CHECK_FALSE(fleet::met(expectation("a,b"), {"a", "c", "d"}));
}

TEST_CASE("the report: sorted by node, counted, judged")
{
    const auto report = fleet::make_report(texts({Answer("leaf-c"), degraded("leaf-a"), Answer("leaf-b")}), {});
    REQUIRE(report.leaves.size() == 3);
    CHECK(report.leaves[0].node == "leaf-a");
    CHECK(report.leaves[1].node == "leaf-b");
    CHECK(report.leaves[2].node == "leaf-c");
    CHECK((report.ok == 2 && report.degraded == 1 && report.failing == 0));
    CHECK(fleet::exit_status(report) == 0);
    CHECK(fleet::summary_line(report) == "3 leaves: 2 ok, 1 degraded, 0 failing");

    const fleet::Leaf& a = report.leaves[0];
    CHECK(a.uplink == "down");
    CHECK(a.events_pending == 17);
    CHECK(a.events_dropped == 2);
    CHECK_FALSE(a.events_ok);
    CHECK(a.uptime_s == 12 * 60 + 5);
    CHECK(a.heartbeat_age_s == 2);  // by the leaf's own clock
    REQUIRE(a.problems.size() == 2);
    CHECK(a.problems[0] == "events: jetstream (stream CIM_LEAF_EVENTS, durable), 17 pending (oldest 2m 5s), 2 dropped");
    CHECK(a.problems[1] == "uplink down since 2026-11-30T05:30:06.500Z");
    CHECK(report.leaves[1].uplink.empty());  // not watched
    CHECK(report.leaves[1].problems.empty());
}

TEST_CASE("the report: a failing leaf or a missing one fails the command")
{
    auto report = fleet::make_report(texts({Answer("a"), failing("b")}), {});
    CHECK(fleet::exit_status(report) == 1);
    CHECK(fleet::summary_line(report) == "2 leaves: 1 ok, 0 degraded, 1 failing");
    CHECK(report.leaves[1].problems == std::vector<std::string>{"D-Bus name not owned on the system bus"});
    CHECK_FALSE(report.leaves[1].heartbeat_age_s);  // never

    report = fleet::make_report(texts({Answer("a"), Answer("b")}), expectation("3"));
    CHECK(fleet::exit_status(report) == 1);
    CHECK(fleet::summary_line(report) == "2 leaves: 2 ok, 0 degraded, 0 failing; expected 3, 2 answered");
    CHECK(report.missing.empty());  // a count cannot name them

    report = fleet::make_report(texts({Answer("a"), Answer("b"), Answer("d")}), expectation("a,b,c"));
    CHECK(fleet::exit_status(report) == 1);
    CHECK(report.missing == std::vector<std::string>{"c"});
    CHECK(fleet::summary_line(report) == "3 leaves: 3 ok, 0 degraded, 0 failing; expected 3, 2 answered; missing: c");

    report = fleet::make_report(texts({Answer("a"), Answer("b"), Answer("c")}), expectation("a,b,c"));
    CHECK(fleet::exit_status(report) == 0);
    CHECK(fleet::summary_line(report) == "3 leaves: 3 ok, 0 degraded, 0 failing; expected 3, 3 answered");

    report = fleet::make_report({}, expectation("2"));
    CHECK(fleet::exit_status(report) == 1);
    CHECK(fleet::summary_line(report) == "no leaf answered; expected 2, 0 answered");
    CHECK(fleet::exit_status(fleet::make_report({}, {})) == 0);
}

TEST_CASE("the report: one node id twice counts once, and is said")
{
    const auto report = fleet::make_report(texts({Answer("a"), Answer("a"), Answer("b")}), expectation("3"));
    CHECK(report.leaves.size() == 3);
    CHECK(report.answered_nodes == 2);
    CHECK(report.duplicates == std::vector<std::string>{"a"});
    CHECK(fleet::exit_status(report) == 1);
    CHECK(fleet::summary_line(report) ==
        "3 leaves: 3 ok, 0 degraded, 0 failing; expected 3, 2 answered; more than one answer from a (one node id on "
        "several hosts?)");
}

TEST_CASE("the report: what is no health payload is counted, not shown")
{
    auto wrong_type = nlohmann::json::parse(Answer("x").text());
    wrong_type["uptime_s"] = "long";
    auto no_status = nlohmann::json::parse(Answer("y").text());
    no_status.erase("status");
    auto bad_status = nlohmann::json::parse(Answer("z").text());
    bad_status["status"] = "fine";
    auto bad_check = nlohmann::json::parse(Answer("w").text());
    bad_check["checks"]["events"] = 5;
    const auto report =
        fleet::make_report({"garbage", "[]", "{\"node\": \"a.b\", \"status\": \"ok\"}", wrong_type.dump(),
                               no_status.dump(), bad_status.dump(), bad_check.dump(), Answer("ok").text()},
            {});
    CHECK(report.leaves.size() == 1);
    CHECK(report.unreadable == 7);
    CHECK(fleet::summary_line(report) ==
        "1 leaf: 1 ok, 0 degraded, 0 failing; 7 answers were not a cim-leaf health payload");
    CHECK(fleet::node_of(Answer("n").text()) == "n");
    CHECK_FALSE(fleet::node_of("{\"node\": 5}"));
    CHECK_FALSE(fleet::node_of(bad_status.dump()));  // what the report would not count does not end the waiting
    CHECK_FALSE(fleet::node_of("nonsense"));
}

TEST_CASE("the fleet view: aligned columns, problems under the table, the summary last")
{
    const auto report = fleet::make_report(texts({Answer("leaf-b"), degraded("leaf-a"), failing("c")}), {});
    CHECK(fleet::render(report, false) ==
        "NODE    STATUS    STATE      UPTIME  UPLINK  PENDING         VERSION  HEARTBEAT\n"
        "c       failing   connected  5s      -       0               1.2.3    never\n"
        "leaf-a  degraded  connected  12m 5s  down    17 (2 dropped)  1.2.3    2s ago\n"
        "leaf-b  ok        connected  3d 4h   -       0               1.2.3    2s ago\n"
        "\n"
        "c: D-Bus name not owned on the system bus\n"
        "leaf-a: events: jetstream (stream CIM_LEAF_EVENTS, durable), 17 pending (oldest 2m 5s), 2 dropped\n"
        "leaf-a: uplink down since 2026-11-30T05:30:06.500Z\n"
        "\n"
        "3 leaves: 1 ok, 1 degraded, 1 failing\n");
    CHECK(fleet::render(fleet::make_report({}, {}), false) == "no leaf answered\n");
}

TEST_CASE("the fleet view: colours only where asked, and nothing a leaf sends reaches the terminal raw")
{
    const auto report = fleet::make_report(texts({Answer("a"), degraded("b"), failing("c")}), {});
    const std::string plain = fleet::render(report, false);
    CHECK(plain.find('\x1b') == std::string::npos);
    const std::string coloured = fleet::render(report, true);
    CHECK(coloured.find("\x1b[32mok\x1b[0m") != std::string::npos);
    CHECK(coloured.find("\x1b[33mdegraded\x1b[0m") != std::string::npos);
    CHECK(coloured.find("\x1b[1;31mfailing\x1b[0m") != std::string::npos);
    CHECK(coloured.find("\x1b[1;31mdown\x1b[0m") != std::string::npos);
    CHECK(coloured.find("\x1b[1;31m3 leaves: 1 ok, 1 degraded, 1 failing\x1b[0m") != std::string::npos);

    Answer hostile("h");
    hostile.live.uplink.watched = true;
    hostile.live.uplink.reason = "\x1b]0;owned\x07 \xc3\xa9";
    const auto shown = fleet::render(fleet::make_report({hostile.text()}, {}), false);
    CHECK(shown.find('\x1b') == std::string::npos);
    CHECK(shown.find("h: uplink unknown (?]0;owned? ?"
                     "?)") != std::string::npos);
    CHECK(fleet::printable("a\tb\x7f") == "a?b?");

    CHECK(fleet::colour_wanted(true, nullptr));
    CHECK(fleet::colour_wanted(true, ""));
    CHECK_FALSE(fleet::colour_wanted(true, "1"));
    CHECK_FALSE(fleet::colour_wanted(false, nullptr));
}

TEST_CASE("the aligned table pads by the text, not by the colour codes")
{
    const std::string table = fleet::aligned({"A", "B", "C"},
        {{{"xyz", fleet::Colour::red}, {"1"}, {"end"}}, {{"x"}, {"22", fleet::Colour::green}, {"e"}}}, true);
    CHECK(table ==
        "A    B   C\n"
        "\x1b[1;31mxyz\x1b[0m  1   end\n"
        "x    \x1b[32m22\x1b[0m  e\n");
}

TEST_CASE("the --json document: every answer and the summary")
{
    const auto report = fleet::make_report(texts({Answer("b"), Answer("a"), failing("c")}), expectation("a,b,d"));
    const auto json = fleet::report_json(report);
    REQUIRE(json["leaves"].size() == 3);
    CHECK(json["leaves"][0]["node"] == "a");
    CHECK(json["leaves"][0] == nlohmann::json::parse(Answer("a").text()));  // as it answered
    CHECK(json["summary"] ==
        nlohmann::json{{"answered", 3}, {"ok", 2}, {"degraded", 0}, {"failing", 1}, {"expected", 3},
            {"expected_nodes", {"a", "b", "d"}}, {"missing", {"d"}}, {"duplicates", nlohmann::json::array()},
            {"unreadable", 0}});
    CHECK(fleet::report_json(fleet::make_report({}, {}))["summary"]["expected"].is_null());
}

TEST_CASE("durations in words and RFC 3339 times read back")
{
    CHECK(util::duration_words(0) == "0s");
    CHECK(util::duration_words(65) == "1m 5s");
    CHECK(util::duration_words(3 * 86400 + 4 * 3600 + 5) == "3d 4h 0m 5s");
    CHECK(util::duration_words(3 * 86400 + 4 * 3600 + 5, 2) == "3d 4h");
    CHECK(util::duration_words(3600 + 59, 2) == "1h 0m");
    CHECK(util::duration_words(125, 1) == "2m");
    CHECK(util::duration_words(-3) == "0s");

    const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
    CHECK(util::parse_rfc3339(util::rfc3339(now)) == now);
    CHECK(util::parse_rfc3339("2024-02-29T23:59:59.999Z"));
    // The same text gmtime_r and strftime write, over leap days, year ends and milliseconds.
    for (std::int64_t ms = 0; ms < 4'200'000'000'000; ms += 86'399'999 * 7 + 1) {
        const std::chrono::system_clock::time_point at{std::chrono::milliseconds(ms)};
        const std::time_t seconds = ms / 1000;
        std::tm utc{};
        gmtime_r(&seconds, &utc);
        char expected[32];
        const std::size_t n = std::strftime(expected, sizeof expected, "%Y-%m-%dT%H:%M:%S", &utc);
        std::snprintf(expected + n, sizeof expected - n, ".%03dZ", static_cast<int>(ms % 1000));
        REQUIRE(util::rfc3339(at) == expected);
    }
    for (const char* bad : {"", "2023-02-29T00:00:00.000Z", "2026-11-30T24:00:00.000Z", "2026-11-30T05:31:36Z",
             "2026-11-30T05:31:36.123+01:00", "2026-11-30 05:31:36.123Z", "2026-1a-30T05:31:36.123Z"})
        CHECK_MESSAGE(!util::parse_rfc3339(bad), bad);
}

TEST_CASE("fleet on the command line: flags stand in for the file's keys")
{
    auto parse = [](std::vector<const char*> args) {
        args.insert(args.begin(), {"cim-leaf", "fleet"});
        return cli::parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
    };
    auto fleet = std::get<cli::Fleet>(*parse({}).command);
    CHECK(fleet.config_path == "/etc/cim-leaf/config.yaml");
    CHECK(fleet.overrides.empty());
    CHECK(fleet.timeout == 2s);
    CHECK_FALSE(fleet.expect);
    CHECK_FALSE(fleet.json);

    // --server alone reads no file.
    fleet = std::get<cli::Fleet>(*parse({"--server", "nats://a:4222,nats://b:4222", "--server=nats://c:4222", "--json",
                                            "--timeout", "500ms", "--expect", "a,b", "--prefix", "site.leaves"})
                                      .command);
    CHECK_FALSE(fleet.config_path);
    CHECK(fleet.json);
    CHECK(fleet.timeout == 500ms);
    CHECK(fleet.expect == fleet::Expectation{2, {"a", "b"}});
    REQUIRE(fleet.overrides.size() == 2);
    CHECK(fleet.overrides[0].flag == "--server");
    CHECK(fleet.overrides[0].key == "nats.servers");
    CHECK(fleet.overrides[0].value == nlohmann::json{"nats://a:4222", "nats://b:4222", "nats://c:4222"});
    CHECK(fleet.overrides[1].key == "subjects.prefix");
    CHECK(fleet.overrides[1].value == "site.leaves");

    // An authentication flag replaces the file's method; a relative file is
    // the working directory's, not a credential name.
    fleet = std::get<cli::Fleet>(*parse({"--config", "/c.yaml", "--token-file", "t", "--tls-ca", "/ca.pem"}).command);
    CHECK(fleet.config_path == "/c.yaml");
    char cwd[4096];
    REQUIRE(getcwd(cwd, sizeof cwd));
    std::vector<std::pair<std::string, nlohmann::json>> set;
    for (const auto& override : fleet.overrides)
        set.emplace_back(override.key, override.value);
    CHECK(set ==
        std::vector<std::pair<std::string, nlohmann::json>>{{"nats.token_file", std::string(cwd) + "/t"},
            {"nats.tls.ca_file", "/ca.pem"}, {"nats.credentials_file", nullptr}, {"nats.user", nullptr},
            {"nats.password_file", nullptr}, {"nats.nkey_seed_file", nullptr}});
    CHECK(fleet.overrides[2].flag == "--token-file");

    CHECK(parse({"--bogus"}).error == "unknown argument to fleet: --bogus");
    CHECK(parse({"--creds"}).error == "--creds needs a value");
    CHECK(parse({"--json", "--expect"}).error == "--expect needs a value");
    CHECK(parse({"--expect", "0"}).error.find("--expect needs a count of at least 1") == 0);
    CHECK(parse({"--timeout", "soon"}).error ==
        "--timeout must be a duration like 500ms or 5s, from 10ms to 1h; got soon");
    CHECK(parse({"--timeout", "2h"}).error.find("--timeout must be") == 0);
    CHECK(std::holds_alternative<cli::Help>(*parse({"--help"}).command));
}

TEST_CASE("overrides: checked like the file's keys, and their errors name the flag")
{
    using config::Override;
    const std::string file = "/tmp/cim-leaf-unit-overrides.yaml";
    {
        std::FILE* out = std::fopen(file.c_str(), "w");
        REQUIRE(out);
        std::fputs("node: {id: n}\nnats:\n  servers: [nats://file:4222]\n  token_file: /file-token\n", out);
        std::fclose(out);
    }
    auto loaded = config::load(file,
        {{"--server", "nats.servers", {"nats://flag:4222"}}, {"--creds", "nats.credentials_file", "/creds"},
            {"--creds", "nats.token_file", nullptr}});
    REQUIRE(loaded.config);
    CHECK(loaded.config->nats.servers == std::vector<std::string>{"nats://flag:4222"});
    CHECK(loaded.config->nats.credentials_file == "/creds");
    CHECK(loaded.config->nats.token_file.empty());
    CHECK(loaded.config->node.id == "n");  // the rest is the file's
    // Problems found later (a secret file) name the flag too.
    CHECK(config::diagnostic_at(loaded.origin, "nats.credentials_file", "cannot open").str() ==
        "--creds: nats.credentials_file: cannot open");
    CHECK(config::diagnostic_at(loaded.origin, "node.id", "x").str() == file + ":1:8: node.id: x");

    loaded = config::load(file, {{"--server", "nats.servers", {"http://flag"}}});
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors[0].str() ==
        "--server: nats.servers: expected a URL like nats://host:4222 or tls://host:4222 (no user or password in it), "
        "got \"http://flag\"");

    // Without a file: the defaults, and the flags.
    loaded = config::load(std::nullopt, {{"--prefix", "subjects.prefix", "site.x"}});
    REQUIRE(loaded.config);
    CHECK(loaded.config->subjects.prefix == "site.x");
    CHECK(loaded.config->nats.servers == std::vector<std::string>{"nats://127.0.0.1:4222"});
    loaded = config::load(std::nullopt, {{"--prefix", "subjects.prefix", "a.>"}});
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors[0].str().find("--prefix: subjects.prefix: expected dot-separated NATS tokens") == 0);

    // A file that is wrong where an override goes keeps its own error.
    {
        std::FILE* out = std::fopen(file.c_str(), "w");
        std::fputs("nats: 5\n", out);
        std::fclose(out);
    }
    loaded = config::load(file, {{"--server", "nats.servers", {"nats://flag:4222"}}});
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors[0].str() == file + ":1:7: nats: expected a mapping, got \"5\"");
    std::remove(file.c_str());
}

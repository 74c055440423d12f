// The daemon's state machine with a double in place of its NATS connection,
// a real sd-event loop and a real notify socket: what it tells systemd, what
// it publishes and what health says, transition by transition.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "config/load.hpp"
#include "health.hpp"
#include "leaf.hpp"

using namespace cim;
using Outcome = nats::Published::Outcome;

namespace {

// Stands in for nats::Link: records what is published (requests too, with
// their tokens) and answers with the outcomes a test queues (sent when none
// is queued); the test plays the server's answers.
struct FakeConnection final : nats::Connection {
    nats::Handlers handlers;
    std::vector<nats::Message> published;
    std::vector<std::pair<nats::Message, std::uint64_t>> requests;
    std::deque<Outcome> outcomes;
    bool stopped = false;

    nats::Published publish(const nats::Message& message) override
    {
        Outcome outcome = Outcome::sent;
        if (!outcomes.empty()) {
            outcome = outcomes.front();
            outcomes.pop_front();
        }
        if (outcome == Outcome::sent)
            published.push_back(message);
        return {outcome, outcome == Outcome::sent ? "" : "the double says no"};
    }

    nats::Published request(const nats::Message& message, std::uint64_t token) override
    {
        const nats::Published published = publish(message);
        if (published)
            requests.emplace_back(message, token);
        return published;
    }

    // The server's answer to the latest request.
    void answer(const std::string& payload, bool no_responders = false)
    {
        REQUIRE_FALSE(requests.empty());
        handlers.answered({requests.back().second, payload, no_responders});
    }

    std::string last_subject() const { return requests.empty() ? "" : requests.back().first.subject; }

    void stop(std::chrono::milliseconds) override { stopped = true; }

    // The event types published, in order.
    std::vector<std::string> events() const
    {
        std::vector<std::string> out;
        for (const auto& m : published)
            if (const auto at = m.subject.find(".events."); at != std::string::npos)
                out.push_back(m.subject.substr(at + 8));
        return out;
    }
};

// Stands in for dbus::Bus: records what the daemon announces; the test says
// when the name is owned.
struct FakeBus final : dbus::Connection {
    dbus::Handlers handlers;
    std::vector<std::pair<LiveState, LiveState>> changes;

    void changed(const LiveState& before, const LiveState& after) override { changes.emplace_back(before, after); }
};

// A notify socket the Leaf's Notifier finds through NOTIFY_SOCKET.
class NotifySocket {
public:
    NotifySocket()
    {
        path_ = std::filesystem::temp_directory_path() / ("cim-leaf-unit-" + std::to_string(getpid()) + ".sock");
        std::filesystem::remove(path_);
        fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path_.c_str());
        REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        setenv("NOTIFY_SOCKET", path_.c_str(), 1);
        unsetenv("WATCHDOG_USEC");
    }
    ~NotifySocket()
    {
        unsetenv("NOTIFY_SOCKET");
        close(fd_);
        std::filesystem::remove(path_);
    }

    // Every datagram received since the last call.
    std::vector<std::string> take()
    {
        std::vector<std::string> out;
        char buffer[4096];
        for (ssize_t n; (n = recv(fd_, buffer, sizeof buffer, 0)) > 0;)
            out.emplace_back(buffer, static_cast<std::size_t>(n));
        return out;
    }

private:
    std::filesystem::path path_;
    int fd_ = -1;
};

bool any_starts_with(const std::vector<std::string>& datagrams, const std::string& prefix)
{
    return std::any_of(datagrams.begin(), datagrams.end(), [&](const auto& d) { return d.starts_with(prefix); });
}

const std::string fast_config = "node: {id: unit}\n"
                                "nats: {servers: [nats://127.0.0.1:4222]}\n"
                                "heartbeat: {interval: 100ms}\n"
                                "events: {delivery: core}\n"
                                "dbus: {bus: none}\n";

// A directory of its own for each harness's event spool.
std::filesystem::path new_state_directory()
{
    std::string pattern = (std::filesystem::temp_directory_path() / "cim-leaf-unit-state-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()));
    return pattern;
}

struct Harness {
    explicit Harness(std::chrono::milliseconds loss_memory = std::chrono::minutes(5),
        const std::string& config = fast_config, std::filesystem::path state = new_state_directory())
        : config_path(std::filesystem::temp_directory_path() / ("cim-leaf-unit-" + std::to_string(getpid()) + ".yaml")),
          state_directory(std::move(state)),
          leaf(loop,
              {.config_path = config_path,
                  .log_level = spdlog::level::critical,
                  .state_directory = state_directory,
                  .loss_memory = loss_memory},
              parse(write(config)), {},
              {
                  .connect_nats =
                      [this](const config::Config&, const nats::Auth&, nats::Handlers handlers) {
                          auto link = std::make_shared<FakeConnection>();
                          link->handlers = std::move(handlers);
                          links.push_back(link);
                          return link;
                      },
                  .connect_bus =
                      [this](config::Bus, dbus::Control&, dbus::Handlers handlers) {
                          auto made = std::make_unique<FakeBus>();
                          made->handlers = std::move(handlers);
                          bus = made.get();
                          return made;
                      },
              })
    {
        leaf.start();
    }
    ~Harness()
    {
        std::filesystem::remove(config_path);
        if (!keep_state)
            std::filesystem::remove_all(state_directory);
    }

    // The Leaf's config file, for its reloads.
    const std::string& write(const std::string& text)
    {
        std::ofstream(config_path) << text;
        return text;
    }

    config::Config parse(const std::string& text)
    {
        auto loaded = config::load_string(text, config_path);
        REQUIRE(loaded.config);
        return *loaded.config;
    }

    FakeConnection& link() { return *links.back(); }
    void connect(std::int64_t max_payload = 1 << 20)
    {
        link().handlers.connected({"nats://a:4222", max_payload});
        settle();
    }

    // Runs the loop until what was recorded is on disk, and so sent if it can be.
    void settle()
    {
        REQUIRE(run_until([this] { return leaf.events_on_disk(); }));
    }
    // The event types published so far, once settled.
    std::vector<std::string> events(std::size_t link = SIZE_MAX)
    {
        settle();
        return (link == SIZE_MAX ? links.back() : links.at(link))->events();
    }

    // Runs the loop until `done` (timers fire, signals arrive); false when
    // it has not happened within `limit`.
    template <typename Done> bool run_until(Done done, std::chrono::milliseconds limit = std::chrono::seconds(5))
    {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < end)
            loop.run_for(std::chrono::milliseconds(10));
        return done();
    }

    NotifySocket notify;
    std::string config_path;
    std::filesystem::path state_directory;
    bool keep_state = false;  // for a next Harness, as a restart
    EventLoop loop;
    std::vector<std::shared_ptr<FakeConnection>> links;
    FakeBus* bus = nullptr;
    Leaf leaf;
};

const std::string bus_config = "node: {id: unit}\ndbus: {bus: session}\n";

}  // namespace

TEST_CASE("READY=1 only once NATS is confirmed; what was raised before goes out first, in order")
{
    Harness h;
    CHECK(h.leaf.live().state == State::connecting);
    CHECK(h.link().published.empty());
    CHECK_FALSE(any_starts_with(h.notify.take(), "READY=1"));
    h.connect();
    // One datagram wakes PID 1: READY=1 carries the new STATUS=.
    CHECK(h.notify.take() == std::vector<std::string>{"READY=1\nSTATUS=Connected to nats://a:4222"});
    CHECK(h.leaf.live().state == State::connected);
    CHECK(h.events() == std::vector<std::string>{"started", "ready"});
    CHECK(health_status(h.leaf.live()) == "ok");
}

TEST_CASE("NATS lost and back: one reconnect; what was raised meanwhile goes out in order, then the reconnect")
{
    Harness h;
    h.connect();
    h.link().handlers.disconnected("EOF");
    CHECK(h.leaf.live().state == State::reconnecting);
    CHECK(h.leaf.live().last_error == "NATS connection lost: EOF");
    CHECK(health_status(h.leaf.live()) == "failing");
    h.leaf.reload();  // the same file: reloading, reloaded, kept for later
    CHECK(h.leaf.live().events.pending == 2);
    h.link().handlers.connected({"nats://b:4222", 1 << 20});
    CHECK(h.leaf.live().reconnects == 1);
    CHECK(h.leaf.live().nats_server == "nats://b:4222");
    CHECK(h.events() == std::vector<std::string>{"started", "ready", "reloading", "reloaded", "nats_reconnected"});
    CHECK(h.leaf.live().events.pending == 0);
}

TEST_CASE("a reload to new NATS settings moves to a new connection: no reconnect, no nats_reconnected")
{
    Harness h;
    h.connect();
    h.write("node: {id: unit}\nnats: {servers: [nats://127.0.0.1:4223]}\nevents: {delivery: core}\n"
            "dbus: {bus: none}\n");
    CHECK_FALSE(h.leaf.reload());
    REQUIRE(h.links.size() == 2);
    CHECK(h.links[0]->stopped);
    CHECK_FALSE(h.leaf.live().nats_connected);
    h.connect();
    CHECK(h.leaf.live().reconnects == 0);
    const auto events = h.events(0);
    CHECK(std::find(events.begin(), events.end(), "nats_reconnected") == events.end());
    // The old connection's late news changes nothing.
    h.links[0]->handlers.disconnected("EOF");
    CHECK(h.leaf.live().state == State::connected);
}

TEST_CASE("a rejected reload keeps the old configuration and says why")
{
    Harness h;
    h.connect();
    h.write("heartbeat: {interval: soon}\n");
    const auto error = h.leaf.reload();
    REQUIRE(error);
    CHECK(error->find("heartbeat.interval") != std::string::npos);
    CHECK(h.links.size() == 1);
    CHECK(h.leaf.live().last_reload_failed);
    CHECK(health_status(h.leaf.live()) == "degraded");
    const auto notified = h.notify.take();
    CHECK(any_starts_with(notified, "RELOADING=1\nMONOTONIC_USEC="));
    CHECK(any_starts_with(notified, "READY=1"));  // whether or not the new file was good
    CHECK(h.events().back() == "reload_failed");
}

TEST_CASE("a heartbeat the server cannot take is refused, counted, and degrades health for a while")
{
    const auto memory = std::chrono::milliseconds(300);
    Harness h(memory);
    h.connect(2048);
    h.link().outcomes = {Outcome::too_big};
    REQUIRE(h.run_until([&] { return h.leaf.live().heartbeats_refused == 1; }));
    const auto lost = std::chrono::steady_clock::now();
    CHECK(h.leaf.live().heartbeats_sent == 0);
    CHECK(h.leaf.live().heartbeat_loss.why.find("heartbeat not sent") != std::string::npos);
    CHECK(health_status(h.leaf.live()) == "degraded");
    // The next beats go through; the loss is forgotten after `memory`, not before.
    REQUIRE(h.run_until([&] { return health_status(h.leaf.live()) == "ok"; }));
    CHECK(std::chrono::steady_clock::now() - lost >= memory - std::chrono::milliseconds(20));
    CHECK(h.leaf.live().heartbeats_sent >= 1);
    CHECK(h.leaf.live().heartbeats_refused == 1);
}

TEST_CASE("a heartbeat the server refuses afterwards moves from sent to refused")
{
    Harness h;
    h.connect();
    REQUIRE(h.run_until([&] { return h.leaf.live().heartbeats_sent == 1; }));
    h.link().handlers.refused(
        "cim.leaf.unit.heartbeat", "Permissions Violation for Publish to \"cim.leaf.unit.heartbeat\"");
    CHECK(h.leaf.live().heartbeats_sent == 0);
    CHECK(h.leaf.live().heartbeats_refused == 1);
    h.link().handlers.refused("cim.leaf.unit.events.ready", "Permissions Violation");
    CHECK(h.leaf.live().event_loss.recent);
    CHECK(health_status(h.leaf.live()) == "degraded");
}

TEST_CASE("an event too big is cut to fit; one that can never go is dropped and holds up nothing")
{
    Harness h;
    h.connect(4096);
    h.link().outcomes = {Outcome::too_big, Outcome::sent};
    h.write(std::string(50, 'x') + ": 1\n");  // a reload_failed with a long error
    h.leaf.reload();
    CHECK(h.events().back() == "reload_failed");
    CHECK(h.leaf.live().events.truncated == 1);
    h.link().outcomes = {Outcome::failed};
    h.write(fast_config);
    h.leaf.reload();  // reloading is refused, reloaded goes
    CHECK(h.events().back() == "reloaded");
    CHECK(h.leaf.live().events.dropped == 1);
    CHECK(h.leaf.live().events.pending == 0);
}

TEST_CASE("SIGTERM: STOPPING=1, and with nothing to drain the loop ends at once")
{
    Harness h;
    h.notify.take();
    raise(SIGTERM);  // blocked by the Leaf, delivered through the loop
    const auto began = std::chrono::steady_clock::now();
    CHECK(h.loop.run() == 0);
    CHECK(std::chrono::steady_clock::now() - began < std::chrono::milliseconds(500));
    CHECK(any_starts_with(h.notify.take(), "STOPPING=1"));
}

TEST_CASE("SIGTERM while connected drains NATS and ends when the connection has stopped")
{
    Harness h;
    h.connect();
    raise(SIGTERM);
    auto stopped = h.loop.after(std::chrono::milliseconds(50), [&] { h.link().handlers.stopped(); });
    CHECK(h.loop.run() == 0);
    CHECK(h.link().stopped);
    CHECK(h.events().back() == "stopping");
}

TEST_CASE("with D-Bus, NATS waits for the name, and READY=1 for both")
{
    Harness h(std::chrono::minutes(5), bus_config);
    REQUIRE(h.bus);
    CHECK(h.links.empty());  // a second instance must not publish as this node
    h.bus->handlers.owned();
    REQUIRE(h.links.size() == 1);
    CHECK(h.leaf.live().dbus_name_owned);
    CHECK_FALSE(any_starts_with(h.notify.take(), "READY=1"));
    h.connect();
    CHECK(any_starts_with(h.notify.take(), "READY=1"));
}

TEST_CASE("each transition reaches D-Bus once, however many changes it makes")
{
    Harness h(std::chrono::minutes(5), bus_config);
    h.bus->handlers.owned();
    h.bus->changes.clear();
    h.connect();  // connected, server, READY, the ready event; the syncs change nothing seen while the stream is asked
    REQUIRE_FALSE(h.bus->changes.empty());
    CHECK(h.bus->changes.front().first.state == State::connecting);
    CHECK(h.bus->changes.back().second.state == State::connected);
    CHECK(h.bus->changes.size() <= 2);  // the connection, then the ready event
    h.bus->changes.clear();
    h.link().handlers.disconnected("EOF");
    REQUIRE(h.bus->changes.size() == 1);
    CHECK(h.bus->changes[0].second.state == State::reconnecting);
}

TEST_CASE("a bus that fails at start-up, or is lost later, ends the daemon with 1")
{
    {
        Harness h(std::chrono::minutes(5), bus_config);
        h.bus->handlers.failed("the session bus did not answer within 10 s");
        CHECK(h.loop.run() == 1);
    }
    {
        Harness h(std::chrono::minutes(5), bus_config);
        h.bus->handlers.owned();
        h.connect();
        h.bus->handlers.lost("Connection reset by peer");
        CHECK(h.loop.run() == 1);
    }
}

TEST_CASE("SIGTERM before the name is owned: STOPPING=1 and out at once")
{
    Harness h(std::chrono::minutes(5), bus_config);
    h.notify.take();
    raise(SIGTERM);
    CHECK(h.loop.run() == 0);
    CHECK(any_starts_with(h.notify.take(), "STOPPING=1"));
    CHECK(h.links.empty());
}

namespace {

const std::string jetstream_config = "node: {id: unit}\n"
                                     "heartbeat: {interval: 1h}\n"
                                     "events: {delivery: jetstream}\n"
                                     "dbus: {bus: none}\n";

const std::string stream_info =
    R"({"type":"io.nats.jetstream.api.v1.stream_info_response","config":{"name":"CIM_LEAF_EVENTS",)"
    R"("subjects":["cim.leaf.*.events.>"]}})";

nlohmann::json body(const nats::Message& message)
{
    return nlohmann::json::parse(message.payload);
}

std::string header(const nats::Message& message, const std::string& key)
{
    for (const auto& [k, v] : message.headers)
        if (k == key)
            return v;
    return {};
}

}  // namespace

TEST_CASE("jetstream: the stream is looked up, created when missing, then events go one at a time, each acknowledged")
{
    Harness h(std::chrono::minutes(5), jetstream_config);
    h.connect();
    CHECK(h.link().last_subject() == "$JS.API.STREAM.INFO.CIM_LEAF_EVENTS");
    h.link().answer(R"({"error":{"code":404,"err_code":10059,"description":"stream not found"}})");
    REQUIRE(h.link().last_subject() == "$JS.API.STREAM.CREATE.CIM_LEAF_EVENTS");
    const auto create = body(h.link().requests.back().first);
    CHECK(create["subjects"] == nlohmann::json::array({"cim.leaf.*.events.>"}));
    CHECK(create["storage"] == "file");
    CHECK(create["duplicate_window"] == 7'200'000'000'000);
    h.link().answer(stream_info);
    CHECK(h.leaf.live().events.delivery == "jetstream");
    CHECK(h.leaf.live().events.durable);
    // started, then ready: one in flight at a time.
    REQUIRE(h.link().last_subject() == "cim.leaf.unit.events.started");
    const auto started = h.link().requests.back().first;
    CHECK(body(started)["seq"] == 1);
    CHECK(header(started, "Nats-Msg-Id") == body(started)["event_id"]);
    CHECK(h.leaf.live().events.pending == 2);
    h.link().answer(R"({"stream":"CIM_LEAF_EVENTS","seq":1})");
    REQUIRE(h.link().last_subject() == "cim.leaf.unit.events.ready");
    CHECK(body(h.link().requests.back().first)["seq"] == 2);
    h.link().answer(R"({"stream":"CIM_LEAF_EVENTS","seq":2})");
    CHECK(h.leaf.live().events.pending == 0);
    CHECK(h.leaf.live().events.acknowledged == 2);
    CHECK(health_status(h.leaf.live()) == "ok");
}

TEST_CASE("jetstream: an event without an acknowledgement is sent again, with the same Nats-Msg-Id")
{
    Harness h(std::chrono::minutes(5), jetstream_config);
    h.connect();
    h.link().answer(stream_info);
    const auto first = h.link().requests.back();
    REQUIRE(first.first.subject == "cim.leaf.unit.events.started");
    REQUIRE(h.run_until([&] { return h.link().requests.size() == 3; }, std::chrono::seconds(4)));  // ack_wait
    const auto again = h.link().requests.back();
    CHECK(again.first.subject == first.first.subject);
    CHECK(header(again.first, "Nats-Msg-Id") == header(first.first, "Nats-Msg-Id"));
    CHECK(again.second != first.second);
    // A late answer to the first send counts as well.
    h.link().handlers.answered({first.second, R"({"stream":"CIM_LEAF_EVENTS","seq":1})", false});
    CHECK(h.link().last_subject() == "cim.leaf.unit.events.ready");
    CHECK(h.leaf.live().events.acknowledged == 1);
}

TEST_CASE("jetstream: a stream that does not capture this node's events is an error, never a fall-back")
{
    Harness h(std::chrono::minutes(5), jetstream_config);
    h.connect();
    h.link().answer(R"({"config":{"name":"CIM_LEAF_EVENTS","subjects":["other.>"]}})");
    const auto& events = h.leaf.live().events;
    CHECK(events.delivery == "waiting");
    CHECK(events.problem.find("does not capture cim.leaf.unit.events.>") != std::string::npos);
    CHECK(events.pending == 2);
    CHECK(h.link().requests.size() == 1);  // nothing published
    CHECK(health_status(h.leaf.live()) == "degraded");
}

TEST_CASE("auto on an account without JetStream: plain publishes, and health says not durable")
{
    Harness h(std::chrono::minutes(5), "node: {id: unit}\nheartbeat: {interval: 1h}\ndbus: {bus: none}\n");
    h.connect();
    h.link().answer("", true);  // no responders
    CHECK(h.leaf.live().events.delivery == "core");
    CHECK_FALSE(h.leaf.live().events.durable);
    CHECK(h.events() == std::vector<std::string>{"started", "ready"});
    CHECK(h.leaf.live().events.pending == 0);
    CHECK(health_status(h.leaf.live()) == "ok");
}

TEST_CASE("events pending at a stop are sent after the restart, with their own id, time and seq")
{
    const auto state = new_state_directory();
    std::string started_id;
    {
        Harness h(std::chrono::minutes(5), fast_config, state);
        h.keep_state = true;
        REQUIRE(h.leaf.live().events.pending == 1);  // started, never connected
    }
    // Event times have millisecond resolution: the restart's own started
    // event must carry a later one, so a kept time can be told from a new one.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    Harness h(std::chrono::minutes(5), fast_config, state);
    h.connect();
    REQUIRE(h.link().published.size() >= 3);
    const auto first = body(h.link().published[0]);
    const auto second = body(h.link().published[1]);
    CHECK(first["event_type"] == "started");
    CHECK(first["seq"] == 1);
    CHECK(second["event_type"] == "started");
    CHECK(second["seq"] == 2);
    CHECK(first["event_id"] != second["event_id"]);
    CHECK(first["time"] < second["time"]);
}

TEST_CASE("a full spool drops the oldest, and an events_dropped event records the gap")
{
    Harness h(std::chrono::minutes(5),
        "node: {id: unit}\nevents: {delivery: core, spool_bytes: 65536}\n"
        "dbus: {bus: none}\n");
    for (int i = 0; i < 150 && h.leaf.live().events.dropped == 0; ++i) {
        h.leaf.reload();  // reloading and reloaded, kept while not connected
        h.notify.take();
    }
    REQUIRE(h.leaf.live().events.dropped > 0);
    CHECK(h.leaf.live().event_loss.recent);
    h.connect();
    // Every seq is accounted for: published, or in an events_dropped range.
    std::set<std::uint64_t> seen;
    std::uint64_t reported = 0;
    for (const auto& message : h.link().published) {
        const auto event = body(message);
        seen.insert(event["seq"].get<std::uint64_t>());
        if (event["event_type"] != "events_dropped")
            continue;
        const auto& data = event["data"];
        reported += data["count"].get<std::uint64_t>();
        for (const auto& range : data["ranges"])
            for (auto seq = range[0].get<std::uint64_t>(); seq <= range[1].get<std::uint64_t>(); ++seq)
                CHECK(seen.insert(seq).second);
    }
    CHECK(reported == h.leaf.live().events.dropped);
    REQUIRE_FALSE(seen.empty());
    CHECK(*seen.begin() == 1);
    CHECK(*seen.rbegin() == seen.size());  // no gap
}

TEST_CASE("SIGTERM with jetstream: the stopping event's acknowledgement is waited for, then NATS drained")
{
    Harness h(std::chrono::minutes(5), jetstream_config);
    h.connect();
    h.link().answer(stream_info);
    h.link().answer(R"({"stream":"CIM_LEAF_EVENTS","seq":1})");
    h.link().answer(R"({"stream":"CIM_LEAF_EVENTS","seq":2})");
    raise(SIGTERM);
    h.run_until([&] { return h.link().last_subject() == "cim.leaf.unit.events.stopping"; });
    CHECK_FALSE(h.link().stopped);  // waits for the acknowledgement
    h.link().answer(R"({"stream":"CIM_LEAF_EVENTS","seq":3})");
    CHECK(h.link().stopped);
    CHECK(h.leaf.live().events.pending == 0);
}

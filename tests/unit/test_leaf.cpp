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

#include <doctest/doctest.h>

#include "config/load.hpp"
#include "health.hpp"
#include "leaf.hpp"

using namespace cim;
using Outcome = nats::Published::Outcome;

namespace {

// Stands in for nats::Link: records what is published and answers with the
// outcomes a test queues (sent when none is queued).
struct FakeConnection final : nats::Connection {
    nats::Handlers handlers;
    std::vector<nats::Message> published;
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
                                "dbus: {bus: none}\n";

struct Harness {
    explicit Harness(
        std::chrono::milliseconds loss_memory = std::chrono::minutes(5), const std::string& config = fast_config)
        : config_path(std::filesystem::temp_directory_path() / ("cim-leaf-unit-" + std::to_string(getpid()) + ".yaml")),
          leaf(loop, {config_path, spdlog::level::critical, loss_memory}, parse(write(config)), {},
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
    ~Harness() { std::filesystem::remove(config_path); }

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
    void connect(std::int64_t max_payload = 1 << 20) { link().handlers.connected({"nats://a:4222", max_payload}); }

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
    CHECK(any_starts_with(h.notify.take(), "READY=1"));
    CHECK(h.leaf.live().state == State::connected);
    CHECK(h.link().events() == std::vector<std::string>{"started", "ready"});
    CHECK(health_status(h.leaf.live()) == "ok");
}

TEST_CASE("NATS lost and back: one reconnect, its event first, then what was raised meanwhile")
{
    Harness h;
    h.connect();
    h.link().handlers.disconnected("EOF");
    CHECK(h.leaf.live().state == State::reconnecting);
    CHECK(h.leaf.live().last_error == "NATS connection lost: EOF");
    CHECK(health_status(h.leaf.live()) == "failing");
    h.leaf.reload();  // the same file: reloading, reloaded, kept for later
    CHECK(h.leaf.live().events_buffered == 2);
    h.link().handlers.reconnected({"nats://b:4222", 1 << 20});
    CHECK(h.leaf.live().reconnects == 1);
    CHECK(h.leaf.live().nats_server == "nats://b:4222");
    CHECK(
        h.link().events() == std::vector<std::string>{"started", "ready", "nats_reconnected", "reloading", "reloaded"});
    CHECK(h.leaf.live().events_buffered == 0);
}

TEST_CASE("a reload to new NATS settings moves to a new connection: no reconnect, no nats_reconnected")
{
    Harness h;
    h.connect();
    h.write("node: {id: unit}\nnats: {servers: [nats://127.0.0.1:4223]}\ndbus: {bus: none}\n");
    CHECK_FALSE(h.leaf.reload());
    REQUIRE(h.links.size() == 2);
    CHECK(h.links[0]->stopped);
    CHECK_FALSE(h.leaf.live().nats_connected);
    h.connect();
    CHECK(h.leaf.live().reconnects == 0);
    const auto events = h.links[0]->events();
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
    CHECK(h.link().events().back() == "reload_failed");
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
    CHECK(h.leaf.live().last_loss.find("heartbeat not sent") != std::string::npos);
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
    CHECK(h.leaf.live().events_dropped == 1);
    CHECK(health_status(h.leaf.live()) == "degraded");
}

TEST_CASE("an event too big is cut to fit; one that can never go is dropped and holds up nothing")
{
    Harness h;
    h.connect(4096);
    h.link().outcomes = {Outcome::too_big, Outcome::sent};
    h.write(std::string(50, 'x') + ": 1\n");  // a reload_failed with a long error
    h.leaf.reload();
    CHECK(h.leaf.live().events_truncated == 1);
    CHECK(h.link().events().back() == "reload_failed");
    h.link().outcomes = {Outcome::failed};
    h.write(fast_config);
    h.leaf.reload();  // reloading is refused, reloaded goes
    CHECK(h.leaf.live().events_dropped == 1);
    CHECK(h.link().events().back() == "reloaded");
    CHECK(h.leaf.live().events_buffered == 0);
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
    CHECK(h.link().events().back() == "stopping");
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
    h.connect();  // connected, server, events flushed, READY, the ready event
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

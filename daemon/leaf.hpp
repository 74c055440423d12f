#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/common.h>

#include "config/config.hpp"
#include "dbus/control.hpp"
#include "event_loop.hpp"
#include "events/delivery.hpp"
#include "health_snapshot.hpp"
#include "live_state.hpp"
#include "nats/auth.hpp"
#include "nats/connection.hpp"
#include "nats/payloads.hpp"
#include "notify.hpp"
#include "units/tracker.hpp"
#include "units/watcher.hpp"
#include "uplink/monitor.hpp"

namespace cim {

// The daemon: owns the configuration, the live state and the parts that
// report it (NATS connection, D-Bus object, systemd notify), all driven from
// one event loop. Every state change happens inside a `Change`; the
// outermost one commits it: STATUS=, D-Bus properties and the snapshot NATS
// health replies read.
class Leaf final : public dbus::Control {
public:
    struct Options {
        std::string config_path;
        std::optional<spdlog::level::level_enum> log_level;  // --log-level, wins over log.level
        std::filesystem::path state_directory;  // where the event spool lives
        // After a heartbeat or event is lost, health says `degraded` this long.
        std::chrono::milliseconds loss_memory = std::chrono::minutes(5);
    };

    // How the daemon reaches NATS and the bus: nats::Link and dbus::Bus, or
    // test doubles.
    struct Parts {
        nats::Connector connect_nats;
        dbus::Connector connect_bus;
    };

    Leaf(EventLoop& loop, Options options, config::Config config, nats::Auth auth, Parts parts);
    ~Leaf() override;

    // Starts every part; what cannot run (the D-Bus name is taken, the bus
    // does not answer) is logged and ends the loop with 1.
    void start();

    // After the loop has ended: every event recorded is on disk, and NATS
    // is stopped (draining for at most `drain`) if an exit on error left it
    // running.
    void finish(std::chrono::milliseconds drain);

    // Nothing recorded waits for the disk: what may be sent has been.
    bool events_on_disk() const { return delivery_.on_disk(); }

    // dbus::Control
    const LiveState& live() const override { return live_; }
    std::string health_json() const override;
    std::optional<std::string> reload() override;

private:
    // Changes live_ within its scope; the outermost one commits them.
    class Change {
    public:
        explicit Change(Leaf& leaf);
        ~Change();
        Change(const Change&) = delete;
        Change& operator=(const Change&) = delete;

    private:
        Leaf& leaf_;
        std::optional<LiveState> before_;
    };

    void serve();
    void apply_logging();
    void start_link();
    void stop();

    // The connection's news (nats::Handlers).
    void on_connected(const nats::Server& server);
    void record_connection(const nats::Server& server);
    void on_disconnected(const std::string& reason);
    void on_error(const std::string& error);
    void on_refused(const std::string& subject, const std::string& why);

    void watch_uplink();
    void on_uplink(const uplink::Monitor::Result& result);

    void watch_units();
    void on_units();

    void beat();
    void emit(const nats::Event& event);
    void record_loss(Loss LiveState::*loss, const std::string& why);  // within a Change
    void drain();

    void mark_ready();
    void notify(const std::string& message);
    void commit(const LiveState& before);

    std::string heartbeat_subject() const;

    EventLoop& loop_;
    Options options_;
    config::Config config_;
    nats::Auth auth_;
    Parts parts_;
    Notifier notifier_;
    LiveState live_;
    HealthSnapshot snapshot_;  // live_ as of the last commit, for nats.c threads

    std::vector<EventSource> signals_;
    Timer heartbeat_timer_;
    Timer watchdog_timer_;
    EventSource stop_deadline_;
    EventSource heartbeat_loss_timer_;
    EventSource event_loss_timer_;
    EventSource ack_deadline_;

    std::shared_ptr<nats::Connection> link_;
    events::Delivery delivery_;
    std::unique_ptr<uplink::Monitor> uplink_;
    std::string uplink_known_;  // the last "up" or "down" seen
    std::unique_ptr<units::Watcher> unit_watcher_;
    units::Tracker unit_events_;
    std::unique_ptr<dbus::Connection> bus_;

    int changes_ = 0;  // Changes in scope
    std::uint64_t link_generation_ = 0;
    bool ready_ = false;
    bool ever_connected_ = false;
    bool nats_lost_ = false;  // since the last connection; a reload's new link is not a loss
    bool stopping_ = false;
    std::uint64_t seq_ = 0;
    std::string status_sent_;
};

}  // namespace cim

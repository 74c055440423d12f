#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <spdlog/common.h>

#include "config/config.hpp"
#include "dbus/control.hpp"
#include "event_loop.hpp"
#include "health.hpp"
#include "nats/auth.hpp"
#include "nats/link.hpp"
#include "nats/outbox.hpp"
#include "nats/payloads.hpp"
#include "notify.hpp"

namespace cim {

namespace dbus {
class Bus;
}

// The daemon: owns the configuration, the live state and the parts that
// report it (NATS link, D-Bus object, systemd notify), all driven from one
// event loop. Every state change goes through `commit`, which updates
// STATUS=, D-Bus properties and the snapshot NATS health replies read.
class Leaf final : public dbus::Control {
public:
    struct Options {
        std::string config_path;
        std::optional<spdlog::level::level_enum> log_level;  // --log-level, wins over log.level
    };

    Leaf(EventLoop& loop, Options options, config::Config config, nats::Auth auth);
    ~Leaf() override;

    // Starts every part; returns false (after logging why) when the daemon
    // cannot run, e.g. the D-Bus name is taken.
    bool start();

    // After the loop has ended: stops NATS and waits up to `bound` until no
    // NATS thread can call into the daemon any more; false if one still runs.
    bool let_go_of_nats(std::chrono::milliseconds bound);

    // dbus::Control
    const LiveState& live() const override { return live_; }
    std::string health_json() const override;
    std::optional<std::string> reload() override;

private:
    void apply_logging();
    void start_link();
    void stop();
    void finish_stop();

    void on_connected(const std::string& url);
    void on_disconnected(const std::string& reason);
    void on_error(const std::string& error);

    void beat();
    nats::Outbox::Message message_for(const nats::Event& event) const;
    void emit(const nats::Event& event);
    bool send(const nats::Outbox::Message& message);
    void flush_outbox();

    void mark_ready();
    void notify(const std::string& message);
    void commit(const LiveState& before);

    EventLoop& loop_;
    Options options_;
    config::Config config_;
    nats::Auth auth_;
    Notifier notifier_;
    LiveState live_;

    mutable std::mutex snapshot_mutex_;
    LiveState snapshot_;  // live_ as of the last commit, for nats.c threads
    mutable std::string health_cache_;
    mutable std::chrono::system_clock::time_point health_cache_time_;

    std::vector<EventSource> signals_;
    EventSource heartbeat_timer_;
    EventSource watchdog_timer_;
    EventSource stop_deadline_;

    std::shared_ptr<nats::Link> link_;
    nats::Outbox outbox_;
    std::unique_ptr<dbus::Bus> bus_;

    std::uint64_t link_generation_ = 0;
    bool ready_ = false;
    bool ever_connected_ = false;
    bool stopping_ = false;
    std::uint64_t seq_ = 0;
    std::string status_sent_;
};

}  // namespace cim

#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "event_loop.hpp"
#include "events/spool.hpp"
#include "events/syncer.hpp"
#include "live_state.hpp"
#include "nats/connection.hpp"
#include "nats/payloads.hpp"

namespace cim::events {

// How long a sent event waits for the stream's acknowledgement before it
// is sent again (the stream de-duplicates it by its Nats-Msg-Id).
inline constexpr std::chrono::seconds ack_wait{2};
// How long the JetStream API gets to answer, and how long the daemon waits
// before it asks again about a stream that is missing or unfit.
inline constexpr std::chrono::seconds api_wait{5};
inline constexpr std::chrono::seconds stream_retry{30};
// Events pending longer than this make health `degraded`.
inline constexpr std::chrono::seconds pending_bound{30};

// Where the spool lives: $STATE_DIRECTORY (systemd's StateDirectory=), or
// /var/lib/cim-leaf when run by hand.
std::filesystem::path default_state_directory();

// Lifecycle events from the moment they happen until a stream has them: each
// is numbered (seq), written to the spool and, once fdatasync'd there (by
// the Syncer, off the loop), published to the JetStream stream with
// Nats-Msg-Id = event_id, one at a time so the stream holds them in seq
// order, and re-sent until the stream acknowledges it. On
// an account without JetStream (delivery auto) or with delivery core they
// are plain publishes, delivered once handed to the server. Loop thread only.
class Delivery {
public:
    struct Handlers {
        std::function<void()> changed;  // state() changed
        std::function<void(const std::string& why)> lost;  // events were dropped
    };

    // Opens the spool in `directory`; where that fails, events are kept in
    // memory only (and state() says why).
    Delivery(EventLoop& loop, const config::Config& config, const std::filesystem::path& directory, Handlers handlers);

    // Once the daemon runs: reports what the spool dropped at opening.
    void start();

    void reconfigure(const config::Config& config);

    // Numbers and spools the event, then sends it when it can.
    void record(const nats::Event& event);

    // After the loop has ended: every event recorded is on disk (or the
    // spool says why not) when this returns.
    void finish();

    // The connection to use from now on (nullptr: none): the stream is
    // looked up on it, then pending events go out in order.
    void use(std::shared_ptr<nats::Connection> link, std::int64_t max_payload);

    void answered(const nats::Answer& answer);

    // Nothing waits for an acknowledgement.
    bool idle() const { return spool_.pending().empty(); }
    // Every event recorded is on disk (or cannot be): nothing waits for the Syncer.
    bool on_disk() const { return !spool_.unsynced(); }

    const EventsState& state() const { return state_; }

private:
    enum class Phase { offline, asking, jetstream, core, blocked };

    void ask(const std::string& verb, std::string payload);
    void on_api_answer(const std::string& verb, const nats::Answer& answer);
    void on_ack(std::uint64_t seq, const nats::Answer& answer);
    void block(const std::string& problem);
    void pump();
    nats::Published send(const Record& record, std::optional<std::uint64_t> token);
    void deliver(std::uint64_t seq);  // acknowledged, or handed to the server in core
    void drop(const Record& record, const std::string& why);
    void forget(std::uint64_t seq);
    void lose(const Dropped& dropped);
    void tell_gaps();
    void on_synced(const Spool::Unsynced& what, int error);
    void update();  // refresh(), and tell what changed
    void log_durability();  // when the spool turns not durable (and why), or durable again
    void log_disk_wait(bool waits);
    void refresh();

    EventLoop& loop_;
    config::Config config_;
    Handlers handlers_;
    Spool spool_;
    Syncer syncer_;  // after spool_: stops before it goes
    bool spool_durable_;  // spool_.durable() as last logged
    bool waits_for_disk_ = false;  // the oldest event is overdue, and not on disk yet
    EventsState state_;
    EventsState told_;  // state_ as handlers_.changed last saw it

    Phase phase_ = Phase::offline;
    std::shared_ptr<nats::Connection> link_;
    std::int64_t max_payload_ = 0;
    std::uint64_t next_token_ = 1;
    std::map<std::uint64_t, std::string> asked_;  // token -> the API verb asked
    std::map<std::uint64_t, std::uint64_t> sent_;  // token -> seq, of the event in flight (and its re-sends)
    bool in_flight_ = false;
    EventSource ack_timer_;
    EventSource retry_timer_;
    EventSource overdue_timer_;
    // Events evicted from a full spool, each with the events_dropped event
    // that tells of it: 0 while none does (yet, or again after that one was
    // evicted too). A gap is forgotten once its events_dropped is delivered.
    struct Gap {
        Dropped dropped;
        std::uint64_t told_by = 0;
    };
    std::deque<Gap> gaps_;
    bool telling_ = false;
};

}  // namespace cim::events

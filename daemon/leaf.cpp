#include "leaf.hpp"

#include <signal.h>
#include <time.h>

#include <cstdint>

#include <spdlog/spdlog.h>

#include "config/load.hpp"
#include "health.hpp"
#include "log.hpp"
#include "util/ids.hpp"
#include "util/json.hpp"
#include "util/text.hpp"
#include "version.hpp"

namespace cim {

namespace {

// SIGTERM to exit within 3 s (README): the stream gets `ack_deadline` to
// acknowledge what is pending (the rest stays in the spool), NATS then gets
// `drain_timeout` to deliver what is in flight (nats.c closes the connection
// by then, plus its grace), the loop gives up at `stop_deadline` in any
// case, and main() waits a last moment for NATS threads (main.cpp).
constexpr std::chrono::milliseconds ack_deadline{800};
constexpr std::chrono::milliseconds drain_timeout{800};
constexpr std::chrono::milliseconds stop_deadline{1800};

std::uint64_t monotonic_usec()
{
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(now.tv_nsec) / 1000;
}

// Settings that need a new NATS connection when a reload changes them.
bool link_settings_differ(const config::Config& a, const config::Config& b)
{
    return a.nats != b.nats || a.subjects != b.subjects || a.node.id != b.node.id;
}

}  // namespace

Leaf::Leaf(EventLoop& loop, Options options, config::Config config, nats::Auth auth, Parts parts)
    : loop_(loop), options_(std::move(options)), config_(std::move(config)), auth_(std::move(auth)),
      parts_(std::move(parts)), delivery_(loop, config_, options_.state_directory,
                                    {
                                        .changed =
                                            [this] {
                                                const Change change(*this);
                                                live_.events = delivery_.state();
                                                if (stopping_ && delivery_.idle())
                                                    drain();
                                            },
                                        .lost =
                                            [this](const std::string& why) {
                                                const Change change(*this);
                                                record_loss(&LiveState::event_loss, why);
                                            },
                                    })
{
    live_.node_id = config_.node.id;
    live_.domain = config_.node.domain;
    live_.labels = config_.node.labels;
    live_.bus = config_.dbus.bus;
    live_.notify_socket = notifier_.enabled();
    live_.watchdog_usec = static_cast<std::uint64_t>(notifier_.watchdog_usec().count());
    live_.started_at = std::chrono::system_clock::now();
    live_.started_steady = std::chrono::steady_clock::now();
    snapshot_.update(live_);
}

Leaf::~Leaf() = default;

void Leaf::start()
{
    // Handlers first: a signal that arrives before its handler kills the
    // daemon (systemd #37407). Blocking them also keeps them off the threads
    // nats.c starts later.
    signals_.push_back(loop_.on_signal(SIGTERM, [this] { stop(); }));
    signals_.push_back(loop_.on_signal(SIGINT, [this] { stop(); }));
    signals_.push_back(loop_.on_signal(SIGHUP, [this] { reload(); }));
    signal(SIGPIPE, SIG_IGN);
    // A spool past LimitFSIZE= is a failed write (EFBIG) the spool survives, not a kill.
    signal(SIGXFSZ, SIG_IGN);

    apply_logging();
    if (auto interval = notifier_.watchdog_interval())
        watchdog_timer_ = loop_.every(*interval, [this] { notifier_.send(notify_message::watchdog()); });

    if (config_.dbus.bus == config::Bus::none) {
        serve();
        return;
    }
    // NATS waits for the name: a second instance must not publish as this node.
    notifier_.send(notify_message::status(
        std::string("Connecting to the ") + (config_.dbus.bus == config::Bus::system ? "system" : "session") + " bus"));
    bus_ = parts_.connect_bus(config_.dbus.bus, *this,
        {
            .owned = [this] { serve(); },
            .failed =
                [this](const std::string& why) {
                    spdlog::error("{}", why);
                    loop_.exit(1);
                },
            .lost =
                [this](const std::string& why) {
                    spdlog::error("lost the D-Bus connection ({}); exiting so that systemd restarts the service", why);
                    loop_.exit(1);
                },
        });
}

// Once the D-Bus name is owned (or without D-Bus).
void Leaf::serve()
{
    if (stopping_)
        return;
    {
        const Change change(*this);
        live_.dbus_name_owned = bus_ != nullptr;
        live_.state = State::connecting;
        live_.events = delivery_.state();
    }
    spdlog::info("cim-leaf {} starting as node {}, NATS {}", version_string, config_.node.id,
        util::join(config_.nats.servers, "; "));
    // First: the connection's round trips run on their thread while the
    // loop writes the `started` event to the spool; what the link reports waits
    // for the loop, so `started` still comes first.
    start_link();
    delivery_.start();
    watch_uplink();
    watch_units();
    emit(nats::make_event("started", {{"version", version_string}}));
    heartbeat_timer_ = loop_.every(config_.heartbeat.interval, [this] { beat(); });
    if (config_.systemd.ready_on == config::ReadyOn::started)
        mark_ready();
}

void Leaf::apply_logging()
{
    log::set_node_id(config_.node.id);
    log::set_level(options_.log_level.value_or(*log::parse_level(config_.log.level)));
}

void Leaf::start_link()
{
    // Handlers of a replaced link must not touch the live state any more.
    const std::uint64_t generation = ++link_generation_;
    auto only_current = [this, generation](auto handler) {
        return [this, generation, handler](const auto&... args) {
            if (generation == link_generation_)
                (this->*handler)(args...);
        };
    };
    nats::Handlers handlers{
        .connected = only_current(&Leaf::on_connected),
        .disconnected = only_current(&Leaf::on_disconnected),
        .error = only_current(&Leaf::on_error),
        .refused = only_current(&Leaf::on_refused),
        .answered =
            [this, generation](const nats::Answer& answer) {
                if (generation == link_generation_)
                    delivery_.answered(answer);
            },
        .stopped =
            [this, generation] {
                if (generation == link_generation_)
                    loop_.exit(0);  // drained after SIGTERM
            },
        .health =
            [this](std::string& reply, std::chrono::steady_clock::time_point arrived) {
                snapshot_.write(reply, std::chrono::system_clock::now(), arrived);
            },
    };
    link_ = parts_.connect_nats(config_, auth_, std::move(handlers));
}

void Leaf::on_connected(const nats::Server& server)
{
    const bool becomes_ready = config_.systemd.ready_on == config::ReadyOn::connected && !ready_ && !stopping_;
    {
        const Change change(*this);
        record_connection(server);
        if (becomes_ready)
            status_sent_ = status_text(live_);  // READY=1 carries it: one datagram to PID 1, not two
    }
    // After the change is committed: a health request that follows READY=1
    // must see the connection.
    if (becomes_ready)
        mark_ready();
}

void Leaf::record_connection(const nats::Server& server)
{
    const Change change(*this);
    live_.nats_connected = true;
    live_.nats_server = server.url;
    live_.max_payload = server.max_payload;
    live_.last_error.clear();
    if (!stopping_)
        live_.state = State::connected;
    // A connection after NATS was lost is a reconnect to whoever watches this
    // node; the first one, and a reload's move to new settings, are not.
    const bool again = nats_lost_;
    nats_lost_ = false;
    ever_connected_ = true;
    if (again) {
        ++live_.reconnects;
        spdlog::info("reconnected to NATS at {} (reconnect {})", server.url, live_.reconnects);
    } else {
        spdlog::info("connected to NATS at {}", server.url);
    }
    delivery_.use(link_, server.max_payload);
    if (again)
        emit(nats::make_event("nats_reconnected", {{"server", server.url}}));
}

void Leaf::on_disconnected(const std::string& reason)
{
    if (stopping_ || !live_.nats_connected)
        return;  // nothing lost: a connection that never got confirmed
    const Change change(*this);
    nats_lost_ = true;
    live_.nats_connected = false;
    live_.nats_server.clear();
    live_.max_payload = 0;
    live_.state = State::reconnecting;
    live_.last_error = "NATS connection lost" + (reason.empty() ? "" : ": " + reason);
    delivery_.use(nullptr, 0);
    spdlog::warn("{}; reconnecting", live_.last_error);
}

void Leaf::on_error(const std::string& error)
{
    if (stopping_)
        return;  // draining closes the connection on purpose
    const Change change(*this);
    if (error != live_.last_error)
        spdlog::warn("{}", error);
    live_.last_error = error;
}

void Leaf::on_refused(const std::string& subject, const std::string& why)
{
    const Change change(*this);
    if (subject == heartbeat_subject()) {
        // publish() counted it as sent; the server has the last word.
        if (live_.heartbeats_sent > 0)
            --live_.heartbeats_sent;
        ++live_.heartbeats_refused;
        record_loss(&LiveState::heartbeat_loss, "NATS refused a heartbeat: " + why);
    } else {
        // An event's publish: with JetStream its acknowledgement never comes,
        // and it is sent again; in core it is lost.
        record_loss(&LiveState::event_loss, "NATS refused a publish: " + why);
    }
}

std::string Leaf::heartbeat_subject() const
{
    return config_.subjects.prefix + "." + config_.node.id + ".heartbeat";
}

// Watches the local server's uplink to the hub, when there is a monitoring
// endpoint to ask (uplink.monitor_url).
void Leaf::watch_uplink()
{
    uplink_.reset();
    const Change change(*this);
    live_.uplink = {};
    live_.uplink.watched = !config_.uplink.monitor_url.empty();
    uplink_known_.clear();
    if (live_.uplink.watched)
        uplink_ = std::make_unique<uplink::Monitor>(loop_, config_.uplink.monitor_url, config_.uplink.interval,
            [this](const uplink::Monitor::Result& result) { on_uplink(result); });
}

void Leaf::on_uplink(const uplink::Monitor::Result& result)
{
    const Change change(*this);
    UplinkState& uplink = live_.uplink;
    const auto* remotes = std::get_if<uplink::Remotes>(&result);
    if (!remotes) {
        if (uplink.state != "unknown" || uplink.reason != std::get<std::string>(result))
            spdlog::warn("the uplink's state is unknown: {}", std::get<std::string>(result));
        uplink.state = "unknown";
        uplink.reason = std::get<std::string>(result);
        return;  // `since` stays: the last state that was known
    }
    const auto previous = uplink.remotes;
    uplink.remotes.clear();
    for (const auto& remote : *remotes)
        uplink.remotes.emplace_back(remote.url, remote.rtt);
    uplink.reason.clear();
    uplink.state = remotes->empty() ? "down" : "up";
    if (uplink.state == uplink_known_)
        return;
    const auto now = std::chrono::system_clock::now();
    if (uplink_known_ == "up") {
        nlohmann::json was = nlohmann::json::array();
        for (const auto& [url, rtt] : previous)
            was.push_back(url);
        spdlog::warn("the uplink to the hub is down (was {})", was.dump());
        emit(nats::make_event("uplink_lost", {{"remotes", was}, {"up_since", util::rfc3339(uplink.since)}}));
    } else if (uplink_known_ == "down") {
        spdlog::info("the uplink to the hub is up again: {}", uplink.remotes.front().first);
        emit(nats::make_event("uplink_restored",
            {{"remote", uplink.remotes.front().first},
                {"down_s", std::chrono::duration_cast<std::chrono::seconds>(now - uplink.since).count()}}));
    } else {
        spdlog::info("the uplink to the hub is {}", uplink.state);
    }
    uplink_known_ = uplink.state;
    uplink.since = now;
}

// Watches the systemd units of watch.units, if any.
void Leaf::watch_units()
{
    unit_watcher_.reset();
    const Change change(*this);
    live_.units = {};
    live_.units.watched = !config_.watch.units.empty();
    if (live_.units.watched)
        unit_watcher_ = std::make_unique<units::Watcher>(loop_, config_.watch, [this] { on_units(); });
}

void Leaf::on_units()
{
    const Change change(*this);
    units::Watch watch = unit_watcher_->state();
    for (const nats::Event& event : unit_events_.update(watch.units, std::chrono::system_clock::now())) {
        const auto& data = event.data;
        if (event.event_type == "unit_failed")
            spdlog::warn("unit {} failed ({}, {} {})", data["unit"].get<std::string>(),
                data["result"].get<std::string>(), data["exit_code"].get<std::string>(),
                data["exit_status"].get<int>());
        else
            spdlog::info("unit {} {}", data["unit"].get<std::string>(),
                event.event_type == "unit_restarted" ? "restarted by systemd" : "recovered");
        emit(event);
    }
    live_.units.watching = watch.watching;
    live_.units.reason = std::move(watch.reason);
    live_.units.units = std::move(watch.units);
}

void Leaf::beat()
{
    if (!live_.nats_connected)
        return;  // a missed beat says more than a stale one replayed later
    const nats::Message message{heartbeat_subject(),
        util::dump(
            nats::heartbeat_json(live_, seq_ + 1, std::chrono::system_clock::now(), std::chrono::steady_clock::now())),
        {}};
    const nats::Published published = link_->publish(message);
    if (published.outcome == nats::Published::Outcome::no_connection)
        return;
    const Change change(*this);
    ++seq_;  // a refused beat leaves a gap in seq, as it should
    if (published) {
        ++live_.heartbeats_sent;
        live_.last_heartbeat = std::chrono::system_clock::now();
        spdlog::debug("heartbeat {} sent on {}", seq_, message.subject);
    } else {
        ++live_.heartbeats_refused;
        record_loss(&LiveState::heartbeat_loss,
            "heartbeat not sent: " + published.why +
                (published.outcome == nats::Published::Outcome::too_big ? " (fewer or shorter node.labels)" : ""));
    }
}

void Leaf::emit(const nats::Event& event)
{
    delivery_.record(event);
}

// Within a Change: a heartbeat or event is lost. Health says `degraded`
// until options_.loss_memory has passed without another loss of its kind.
void Leaf::record_loss(Loss LiveState::*kind, const std::string& why)
{
    Loss& loss = live_.*kind;
    if (why != loss.why)
        spdlog::warn("{}", why);  // once while the reason stays the same
    loss.why = why;
    loss.recent = true;
    loss.until = std::chrono::system_clock::now() + options_.loss_memory;
    (kind == &LiveState::heartbeat_loss ? heartbeat_loss_timer_ : event_loss_timer_) =
        loop_.after(options_.loss_memory, [this, kind] {
            const Change change(*this);
            (live_.*kind).recent = false;
        });
}

void Leaf::mark_ready()
{
    if (ready_ || stopping_)
        return;
    ready_ = true;
    notify(notify_message::ready(status_text(live_)));
    spdlog::info("ready");
    emit(nats::make_event("ready"));
}

std::optional<std::string> Leaf::reload()
{
    if (stopping_)
        return "the daemon is stopping";
    // Before READY=1 there is no reload for systemd to track: the new config
    // is simply what READY=1 will be sent with.
    const bool announce = ready_;
    {
        const Change change(*this);
        live_.state = State::reloading;
        if (announce)
            notify(notify_message::reloading(monotonic_usec(), status_text(live_)));
    }
    spdlog::info("reloading {}", options_.config_path);
    const nats::Event reloading = nats::make_event("reloading", {{"config", options_.config_path}});
    emit(reloading);

    auto loaded = nats::load_settings(options_.config_path, nats::Secrets::read);
    if (loaded.config && loaded.config->dbus.bus != config_.dbus.bus)
        loaded.errors.push_back(config::diagnostic_at(
            loaded.origin, "dbus.bus", "cannot change while running; restart the service to move to another bus"));
    std::vector<std::string> errors;
    for (const auto& diagnostic : loaded.errors)
        errors.push_back(diagnostic.str());

    const Change change(*this);
    std::optional<std::string> error;
    if (errors.empty()) {
        config::Config next = std::move(*loaded.config);
        const config::UplinkConfig uplink_settings = config_.uplink;
        const config::WatchConfig watch_settings = config_.watch;
        // A rotated secret file counts as a change too.
        const bool relink = link_settings_differ(config_, next) || *loaded.auth != auth_;
        if (next.heartbeat.interval != config_.heartbeat.interval)
            heartbeat_timer_.set_interval(next.heartbeat.interval);
        config_ = std::move(next);
        auth_ = std::move(*loaded.auth);
        apply_logging();
        live_.node_id = config_.node.id;
        live_.domain = config_.node.domain;
        live_.labels = config_.node.labels;
        live_.last_reload_failed = false;
        live_.last_error.clear();
        if (relink && link_) {  // before serve() there is no link yet
            spdlog::info("NATS settings changed: moving to a new connection");
            link_->stop(drain_timeout);  // drains on its own thread, then goes
            delivery_.use(nullptr, 0);
            live_.nats_connected = false;
            live_.nats_server.clear();
            live_.max_payload = 0;
            start_link();
        }
        delivery_.reconfigure(config_);
        if (config_.uplink != uplink_settings)
            watch_uplink();
        if (config_.watch != watch_settings)
            watch_units();
        spdlog::info("configuration reloaded");
        emit(nats::make_event("reloaded", {{"config", options_.config_path}}, &reloading));
    } else {
        for (const auto& line : errors)
            spdlog::error("reload rejected: {}", line);
        spdlog::error("reload rejected; still running the previous configuration");
        live_.last_reload_failed = true;
        live_.last_error = "reload rejected: " + errors.front();
        error = util::join(errors, "; ");
        emit(nats::make_event("reload_failed", {{"config", options_.config_path}, {"errors", errors}}, &reloading));
    }

    live_.state = live_.nats_connected ? State::connected : ever_connected_ ? State::reconnecting : State::connecting;
    if (announce)
        notify(notify_message::ready(status_text(live_)));
    return error;
}

void Leaf::stop()
{
    if (stopping_)
        return;
    stopping_ = true;
    {
        const Change change(*this);
        live_.state = State::stopping;
        notify(notify_message::stopping(status_text(live_)));
    }
    spdlog::info("stopping");
    emit(nats::make_event("stopping"));
    heartbeat_timer_ = Timer();
    if (!live_.nats_connected) {
        // Nothing to drain (or no link yet, before serve()); a connect
        // attempt that still runs is not waited for. Pending events stay in
        // the spool for the next start.
        loop_.exit(0);
        return;
    }
    stop_deadline_ = loop_.after(stop_deadline, [this] {
        spdlog::warn("NATS did not drain within {} ms; exiting anyway", stop_deadline.count());
        loop_.exit(0);
    });
    // The stream's acknowledgements first (delivery_ calls drain() when
    // nothing is pending), within a bound.
    ack_deadline_ = loop_.after(ack_deadline, [this] {
        spdlog::warn("{} not acknowledged within {} ms; kept in the spool for the next start",
            util::count_words(delivery_.state().pending, "event"), ack_deadline.count());
        drain();
    });
    if (delivery_.idle())
        drain();
}

// After SIGTERM: the last step, NATS drained and closed.
void Leaf::drain()
{
    if (!ack_deadline_)
        return;  // not waiting for acknowledgements: not stopping, or draining already
    ack_deadline_ = EventSource();
    link_->stop(drain_timeout);
}

void Leaf::finish(std::chrono::milliseconds drain)
{
    delivery_.finish();
    if (link_)
        link_->stop(drain);  // after an exit on error the link still runs
}

std::string Leaf::health_json() const
{
    return snapshot_.json();
}

void Leaf::notify(const std::string& message)
{
    notifier_.send(message);
    status_sent_ = status_text(live_);
}

Leaf::Change::Change(Leaf& leaf) : leaf_(leaf)
{
    if (leaf_.changes_++ == 0)
        before_ = leaf_.live_;
}

Leaf::Change::~Change()
{
    if (--leaf_.changes_ == 0)
        leaf_.commit(*before_);
}

void Leaf::commit(const LiveState& before)
{
    const std::string status = status_text(live_);
    if (status != status_sent_)
        notify(notify_message::status(status));
    if (bus_)
        bus_->changed(before, live_);
    snapshot_.update(live_);
}

}  // namespace cim

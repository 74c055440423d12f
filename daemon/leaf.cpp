#include "leaf.hpp"

#include <signal.h>
#include <time.h>

#include <cstdint>

#include <spdlog/spdlog.h>

#include "config/load.hpp"
#include "dbus/bus.hpp"
#include "log.hpp"

namespace cim {

namespace {

// SIGTERM to exit: NATS gets this long to deliver what is in flight; the
// loop gives up a little later in any case.
constexpr std::chrono::milliseconds drain_timeout{3000};
constexpr std::chrono::milliseconds stop_deadline{5000};

std::uint64_t monotonic_usec()
{
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(now.tv_nsec) / 1000;
}

std::string join(const std::vector<std::string>& lines)
{
    std::string out;
    for (const auto& line : lines)
        out += (out.empty() ? "" : "; ") + line;
    return out;
}

// Settings that need a new NATS connection when a reload changes them.
bool link_settings_differ(const config::Config& a, const config::Config& b)
{
    return a.nats != b.nats || a.subjects != b.subjects || a.node.id != b.node.id;
}

}  // namespace

Leaf::Leaf(EventLoop& loop, Options options, config::Config config, nats::Auth auth)
    : loop_(loop), options_(std::move(options)), config_(std::move(config)), auth_(std::move(auth)),
      outbox_(config_.nats.reconnect.buffer_bytes)
{
    live_.node_id = config_.node.id;
    live_.domain = config_.node.domain;
    live_.labels = config_.node.labels;
    live_.bus = config_.dbus.bus;
    live_.notify_socket = notifier_.enabled();
    live_.watchdog_usec = static_cast<std::uint64_t>(notifier_.watchdog_usec().count());
    live_.started_at = std::chrono::system_clock::now();
    live_.started_steady = std::chrono::steady_clock::now();
    snapshot_ = live_;
}

Leaf::~Leaf() = default;

bool Leaf::start()
{
    // Handlers first: a signal that arrives before its handler kills the
    // daemon (systemd #37407). Blocking them also keeps them off the threads
    // nats.c starts later.
    signals_.push_back(loop_.on_signal(SIGTERM, [this] { stop(); }));
    signals_.push_back(loop_.on_signal(SIGINT, [this] { stop(); }));
    signals_.push_back(loop_.on_signal(SIGHUP, [this] { reload(); }));
    signal(SIGPIPE, SIG_IGN);

    apply_logging();
    if (auto interval = notifier_.watchdog_interval())
        watchdog_timer_ = loop_.every(*interval, [this] { notifier_.send(notify_message::watchdog()); });

    if (config_.dbus.bus != config::Bus::none) {
        try {
            bus_ = std::make_unique<dbus::Bus>(loop_, config_.dbus.bus, *this, [this](const std::string& why) {
                spdlog::error("lost the D-Bus connection ({}); exiting so that systemd restarts the service", why);
                loop_.exit(1);
            });
        } catch (const std::exception& e) {
            spdlog::error("{}", e.what());
            return false;
        }
    }

    const LiveState before = live_;
    live_.dbus_name_owned = bus_ != nullptr;
    live_.state = State::connecting;
    commit(before);
    spdlog::info(
        "cim-leaf {} starting as node {}, NATS {}", version_string, config_.node.id, join(config_.nats.servers));
    emit(nats::make_event("started", {{"version", version_string}}));
    start_link();
    heartbeat_timer_ = loop_.every(config_.heartbeat.interval, [this] { beat(); });
    if (config_.systemd.ready_on == config::ReadyOn::started)
        mark_ready();
    return true;
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
    auto current = [this, generation] { return generation == link_generation_; };
    auto only_current = [this, current](void (Leaf::*handler)(const std::string&)) {
        return [this, current, handler](const std::string& text) {
            if (current())
                (this->*handler)(text);
        };
    };
    nats::Link::Handlers handlers{
        .connected = only_current(&Leaf::on_connected),
        .disconnected = only_current(&Leaf::on_disconnected),
        .reconnected = only_current(&Leaf::on_connected),
        .error = only_current(&Leaf::on_error),
        .stopped =
            [this, current] {
                if (current())
                    finish_stop();
            },
        .health = [this] { return health_json(); },
    };
    link_ = nats::Link::start(loop_, config_, auth_, std::move(handlers));
}

void Leaf::on_connected(const std::string& url)
{
    const LiveState before = live_;
    live_.nats_connected = true;
    live_.nats_server = url;
    live_.last_error.clear();
    if (!stopping_)
        live_.state = State::connected;
    // Any connection after the first, by nats.c's reconnect or a new link
    // after a closed one, is a reconnect to whoever watches this node.
    const bool again = ever_connected_;
    ever_connected_ = true;
    if (again) {
        ++live_.reconnects;
        spdlog::info("reconnected to NATS at {} (reconnect {})", url, live_.reconnects);
    } else {
        spdlog::info("connected to NATS at {}", url);
    }
    commit(before);
    // The reconnect event goes first, then what was raised during the outage.
    if (again && !send(message_for(nats::make_event("nats_reconnected", {{"server", url}}))))
        emit(nats::make_event("nats_reconnected", {{"server", url}}));
    flush_outbox();
    if (config_.systemd.ready_on == config::ReadyOn::connected)
        mark_ready();
}

void Leaf::on_disconnected(const std::string& reason)
{
    if (stopping_ || !live_.nats_connected)
        return;  // nothing lost: a connection that never got confirmed
    const LiveState before = live_;
    live_.nats_connected = false;
    live_.nats_server.clear();
    live_.state = State::reconnecting;
    live_.last_error = "NATS connection lost" + (reason.empty() ? "" : ": " + reason);
    spdlog::warn("{}; reconnecting", live_.last_error);
    commit(before);
}

void Leaf::on_error(const std::string& error)
{
    if (stopping_)
        return;  // draining closes the connection on purpose
    const LiveState before = live_;
    if (error != live_.last_error)
        spdlog::warn("{}", error);
    live_.last_error = error;
    commit(before);
}

void Leaf::beat()
{
    if (!live_.nats_connected)
        return;  // a missed beat says more than a stale one replayed later
    const LiveState before = live_;
    const std::string subject = config_.subjects.prefix + "." + config_.node.id + ".heartbeat";
    const auto payload = nats::dump(
        nats::heartbeat_json(live_, seq_ + 1, std::chrono::system_clock::now(), std::chrono::steady_clock::now()));
    if (!link_->publish(subject, payload))
        return;
    ++seq_;
    ++live_.heartbeats_sent;
    spdlog::debug("heartbeat {} sent on {}", seq_, subject);
    commit(before);
}

nats::Outbox::Message Leaf::message_for(const nats::Event& event) const
{
    return {config_.subjects.prefix + "." + config_.node.id + ".events." + event.event_type,
        nats::dump(nats::event_json(live_, event)),
        {{"X-Message-ID", event.event_id}, {"X-Correlation-ID", event.correlation_id},
            {"X-Causation-ID", event.causation_id}}};
}

void Leaf::emit(const nats::Event& event)
{
    auto message = message_for(event);
    if (live_.nats_connected && outbox_.size() == 0 && send(message))
        return;
    const LiveState before = live_;
    if (!outbox_.push(std::move(message)))
        spdlog::warn("event {} dropped: the outbox already holds {} bytes (nats.reconnect.buffer_bytes)",
            event.event_type, outbox_.bytes());
    live_.events_buffered = outbox_.size();
    live_.events_dropped = outbox_.dropped();
    commit(before);
}

bool Leaf::send(const nats::Outbox::Message& message)
{
    return link_ && link_->publish(message.subject, message.payload, message.headers);
}

void Leaf::flush_outbox()
{
    const LiveState before = live_;
    outbox_.flush([this](const nats::Outbox::Message& message) { return send(message); });
    live_.events_buffered = outbox_.size();
    commit(before);
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
    LiveState before = live_;
    live_.state = State::reloading;
    if (announce)
        notify(notify_message::reloading(monotonic_usec(), status_text(live_)));
    commit(before);
    spdlog::info("reloading {}", options_.config_path);
    const nats::Event reloading = nats::make_event("reloading", {{"config", options_.config_path}});
    emit(reloading);

    auto loaded = nats::load_with_secrets(options_.config_path);
    if (loaded.config && loaded.config->dbus.bus != config_.dbus.bus)
        loaded.errors.push_back(config::diagnostic_at(
            loaded.origin, "dbus.bus", "cannot change while running; restart the service to move to another bus"));
    std::vector<std::string> errors;
    for (const auto& diagnostic : loaded.errors)
        errors.push_back(diagnostic.str());

    before = live_;
    std::optional<std::string> error;
    if (errors.empty()) {
        config::Config next = std::move(*loaded.config);
        // A rotated secret file counts as a change too.
        const bool relink = link_settings_differ(config_, next) || *loaded.auth != auth_;
        if (next.heartbeat.interval != config_.heartbeat.interval)
            EventLoop::set_interval(heartbeat_timer_, next.heartbeat.interval);
        outbox_.set_budget(next.nats.reconnect.buffer_bytes);
        config_ = std::move(next);
        auth_ = std::move(*loaded.auth);
        apply_logging();
        live_.node_id = config_.node.id;
        live_.domain = config_.node.domain;
        live_.labels = config_.node.labels;
        live_.last_reload_failed = false;
        live_.last_error.clear();
        if (relink) {
            spdlog::info("NATS settings changed: reconnecting");
            link_->stop(drain_timeout);  // drains on its own thread, then goes
            live_.nats_connected = false;
            live_.nats_server.clear();
            start_link();
        }
        spdlog::info("configuration reloaded");
        emit(nats::make_event("reloaded", {{"config", options_.config_path}}, &reloading));
    } else {
        for (const auto& line : errors)
            spdlog::error("reload rejected: {}", line);
        spdlog::error("reload rejected; still running the previous configuration");
        live_.last_reload_failed = true;
        live_.last_error = "reload rejected: " + errors.front();
        error = join(errors);
        emit(nats::make_event("reload_failed", {{"config", options_.config_path}, {"errors", errors}}, &reloading));
    }

    live_.state = live_.nats_connected ? State::connected : ever_connected_ ? State::reconnecting : State::connecting;
    if (announce)
        notify(notify_message::ready(status_text(live_)));
    commit(before);
    return error;
}

void Leaf::stop()
{
    if (stopping_)
        return;
    stopping_ = true;
    const LiveState before = live_;
    live_.state = State::stopping;
    notify(notify_message::stopping(status_text(live_)));
    commit(before);
    spdlog::info("stopping");
    emit(nats::make_event("stopping"));
    heartbeat_timer_ = EventSource();
    stop_deadline_ = loop_.after(stop_deadline, [this] {
        spdlog::warn("NATS did not drain within {} ms; exiting anyway", stop_deadline.count());
        finish_stop();
    });
    link_->stop(drain_timeout);
}

void Leaf::finish_stop()
{
    loop_.exit(0);
}

bool Leaf::let_go_of_nats(std::chrono::milliseconds bound)
{
    if (link_)
        link_->stop(bound / 2);  // after an exit on error the link still runs
    return nats::Link::wait_for_all_stopped(bound);
}

std::string Leaf::health_json() const
{
    // Under a burst of requests the same answer serves a whole millisecond
    // (the resolution of its "time"), until the state changes.
    const auto now = std::chrono::system_clock::now();
    std::lock_guard lock(snapshot_mutex_);
    if (health_cache_.empty() || now - health_cache_time_ >= std::chrono::milliseconds(1)) {
        health_cache_ = nats::dump(cim::health_json(snapshot_, now, std::chrono::steady_clock::now()));
        health_cache_time_ = now;
    }
    return health_cache_;
}

void Leaf::notify(const std::string& message)
{
    notifier_.send(message);
    status_sent_ = status_text(live_);
}

void Leaf::commit(const LiveState& before)
{
    const std::string status = status_text(live_);
    if (status != status_sent_)
        notify(notify_message::status(status));
    if (bus_)
        bus_->changed(before, live_);
    std::lock_guard lock(snapshot_mutex_);
    snapshot_ = live_;
    health_cache_.clear();
}

}  // namespace cim

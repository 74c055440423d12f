#include "events/delivery.hpp"

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "events/jetstream.hpp"
#include "util/ids.hpp"
#include "util/json.hpp"
#include "util/text.hpp"

namespace cim::events {

namespace {

Spool open_spool(const std::filesystem::path& directory, std::int64_t max_bytes)
{
    auto opened = Spool::open(directory, max_bytes);
    if (auto* spool = std::get_if<Spool>(&opened)) {
        if (spool->recovery().damaged())
            spdlog::warn("event spool {}: {}", spool->path().string(), spool->recovery().str());
        else if (!spool->pending().empty())
            spdlog::info("event spool {}: {} from the last run to send", spool->path().string(),
                util::count_words(spool->pending().size(), "event"));
        return std::move(*spool);
    }
    const std::string why = std::get<std::string>(opened);
    spdlog::error("{}; events are kept in memory only", why);
    return Spool::in_memory(max_bytes, why);
}

// The headers of an event: Nats-Msg-Id lets the stream drop a re-send; the
// X- ones carry the CIM envelope for consumers that read headers only.
nats::Headers headers_for(const Record& record)
{
    const auto event = nlohmann::json::parse(record.payload, nullptr, false);
    auto field = [&](const char* key) {
        return event.is_object() ? event.value(key, record.event_id) : record.event_id;
    };
    return {{"Nats-Msg-Id", record.event_id}, {"X-Message-ID", record.event_id},
        {"X-Correlation-ID", field("correlation_id")}, {"X-Causation-ID", field("causation_id")}};
}

}  // namespace

std::filesystem::path default_state_directory()
{
    // systemd may list several, separated by ':'; the first is this unit's own.
    const char* directory = std::getenv("STATE_DIRECTORY");
    if (directory && *directory)
        return std::string(directory).substr(0, std::string(directory).find(':'));
    return "/var/lib/cim-leaf";
}

Delivery::Delivery(
    EventLoop& loop, const config::Config& config, const std::filesystem::path& directory, Handlers handlers)
    : loop_(loop), config_(config), handlers_(std::move(handlers)),
      spool_(open_spool(directory, config.events.spool_bytes)),
      syncer_(loop, [this](const Spool::Unsynced& what, int error) { on_synced(what, error); }),
      spool_durable_(spool_.durable())  // open_spool said why not
{
    refresh();
}

void Delivery::start()
{
    lose(spool_.recovery().dropped);  // a smaller spool_bytes than the last run's
    tell_gaps();
}

void Delivery::reconfigure(const config::Config& config)
{
    const bool ask_again = config.events != config_.events;
    config_ = config;
    lose(spool_.set_max_bytes(config.events.spool_bytes));
    tell_gaps();
    if (ask_again && link_)
        use(link_, max_payload_);
    update();
}

void Delivery::record(const nats::Event& event)
{
    const std::uint64_t seq = spool_.next_seq();
    Record record{seq, event.event_id, config_.subjects.prefix + "." + config_.node.id + ".events." + event.event_type,
        util::dump(nats::event_json(config_.node.id, seq, event)), event.time};
    lose(spool_.append(std::move(record)));
    tell_gaps();
    if (auto unsynced = spool_.unsynced())
        syncer_.request(std::move(*unsynced));
    pump();  // a spool that is not durable sends at once
    update();
}

void Delivery::on_synced(const Spool::Unsynced& what, int error)
{
    spool_.synced(what, error);
    pump();
    update();
}

void Delivery::finish()
{
    for (const auto& [what, error] : syncer_.stop())
        spool_.synced(what, error);
    spool_.sync();  // a no-op, unless an event was written without a request
    log_durability();
}

void Delivery::log_durability()
{
    if (spool_.durable() == spool_durable_)
        return;
    spool_durable_ = spool_.durable();
    if (!spool_durable_)
        spdlog::error("{}; events are sent without waiting for the disk until the spool is rewritten", spool_.error());
    else
        spdlog::info("the event spool {} is durable again", spool_.path().string());
}

void Delivery::lose(const Dropped& dropped)
{
    if (dropped.empty())
        return;
    state_.dropped += dropped.count;
    handlers_.lost(util::count_words(dropped.count, "event") + " dropped (seq " + std::to_string(dropped.first_seq) +
        " to " + std::to_string(dropped.last_seq) + "): the spool is full (events.spool_bytes)");
    // An events_dropped event evicted too: what it told must be told again.
    for (Gap& gap : gaps_)
        if (gap.told_by >= dropped.first_seq && gap.told_by <= dropped.last_seq)
            gap.told_by = 0;
    gaps_.push_back({dropped, 0});
}

// One events_dropped event for the gaps no pending event tells of, so the
// gap itself is part of the record. What it evicts in turn is told by the
// next one, when the next event is recorded or one is delivered: never a
// chain of reports eating a full spool.
void Delivery::tell_gaps()
{
    if (telling_)
        return;
    Dropped all;
    nlohmann::json ranges = nlohmann::json::array();
    const std::uint64_t seq = spool_.next_seq();
    for (Gap& gap : gaps_) {
        if (gap.told_by != 0)
            continue;
        all.add(gap.dropped);
        ranges.push_back({gap.dropped.first_seq, gap.dropped.last_seq});
        gap.told_by = seq;
    }
    if (all.empty())
        return;
    telling_ = true;
    record(nats::make_event("events_dropped",
        {{"count", all.count}, {"first_seq", all.first_seq}, {"last_seq", all.last_seq}, {"ranges", ranges},
            {"from", util::rfc3339(all.first_time)}, {"to", util::rfc3339(all.last_time)},
            {"reason", "the spool was full (events.spool_bytes)"}}));
    telling_ = false;
}

void Delivery::use(std::shared_ptr<nats::Connection> link, std::int64_t max_payload)
{
    link_ = std::move(link);
    max_payload_ = max_payload;
    asked_.clear();
    sent_.clear();
    in_flight_ = false;
    ack_timer_ = EventSource();
    retry_timer_ = EventSource();
    if (!link_)
        phase_ = Phase::offline;
    else if (config_.events.delivery == config::Delivery::core)
        phase_ = Phase::core;
    else
        ask("STREAM.INFO", "");
    pump();
    update();
}

void Delivery::ask(const std::string& verb, std::string payload)
{
    phase_ = Phase::asking;
    const std::uint64_t token = next_token_++;
    asked_[token] = verb;
    const std::string subject = jetstream::api(config_.events.stream) + "." + verb + "." + config_.events.stream.name;
    if (!link_->request({subject, std::move(payload), {}}, token)) {
        phase_ = Phase::offline;  // the connection went; use() comes again
        return;
    }
    retry_timer_ = loop_.after(api_wait, [this, verb] {
        block("JetStream did not answer " + verb + " for stream " + config_.events.stream.name + " within " +
            std::to_string(api_wait.count()) + " s");
    });
}

void Delivery::answered(const nats::Answer& answer)
{
    if (auto asked = asked_.find(answer.token); asked != asked_.end()) {
        const std::string verb = asked->second;
        asked_.erase(asked);
        retry_timer_ = EventSource();
        on_api_answer(verb, answer);
    } else if (auto sent = sent_.find(answer.token); sent != sent_.end()) {
        on_ack(sent->second, answer);
    }
    update();
}

void Delivery::on_api_answer(const std::string& verb, const nats::Answer& answer)
{
    const auto reply = jetstream::parse(answer);
    const std::string& name = config_.events.stream.name;
    using Kind = jetstream::Reply::Kind;
    const bool no_jetstream = reply.kind == Kind::no_responders ||
        (reply.kind == Kind::error &&
            (reply.err_code == jetstream::not_enabled_for_account || reply.err_code == jetstream::not_enabled));
    if (no_jetstream && config_.events.delivery == config::Delivery::automatic) {
        spdlog::info("no JetStream for this account{}: events are plain publishes (not durable)",
            config_.events.stream.domain.empty() ? "" : " in domain " + config_.events.stream.domain);
        phase_ = Phase::core;
    } else if (no_jetstream) {
        block(
            "JetStream is not available to this account (" + reply.description + "), and events.delivery is jetstream");
    } else if (reply.kind == Kind::error && reply.err_code == jetstream::stream_not_found && verb == "STREAM.INFO") {
        if (config_.events.stream.create)
            ask("STREAM.CREATE", jetstream::create_request(config_));
        else
            block("stream " + name + " does not exist, and events.stream.create is false");
    } else if (reply.kind != Kind::ok) {
        block(verb + " " + name + ": " + reply.description);
    } else if (const std::string unfit = jetstream::unfit(reply.body, config_); !unfit.empty()) {
        block(unfit);
    } else {
        if (verb == "STREAM.CREATE")
            spdlog::info("created stream {} for the events", name);
        phase_ = Phase::jetstream;
        state_.problem.clear();
    }
    pump();
}

// Events wait (in the spool); the stream is asked about again later.
void Delivery::block(const std::string& problem)
{
    if (problem != state_.problem)
        spdlog::error("events are not delivered: {}", problem);
    state_.problem = problem;
    phase_ = Phase::blocked;
    asked_.clear();
    retry_timer_ = loop_.after(stream_retry, [this] {
        if (link_)
            use(link_, max_payload_);
    });
    update();
}

void Delivery::on_ack(std::uint64_t seq, const nats::Answer& answer)
{
    if (spool_.pending().empty() || spool_.pending().front().seq != seq)
        return;  // a late answer to an earlier send of an event already acknowledged
    const auto reply = jetstream::parse(answer);
    using Kind = jetstream::Reply::Kind;
    if (reply.kind == Kind::ok) {
        deliver(seq);
    } else if (reply.kind == Kind::no_responders) {
        use(link_, max_payload_);  // the stream went away: ask about it again
        return;
    } else if (reply.kind == Kind::error && reply.code < 500) {
        drop(spool_.pending().front(), "the stream refused it: " + reply.description);
    } else {
        return;  // the stream could not store it now: sent again after ack_wait
    }
    pump();
}

void Delivery::deliver(std::uint64_t seq)
{
    forget(seq);
    ++state_.acknowledged;
    std::erase_if(gaps_, [seq](const Gap& gap) { return gap.told_by == seq; });
    tell_gaps();  // there is room now
}

void Delivery::drop(const Record& record, const std::string& why)
{
    ++state_.dropped;
    handlers_.lost(record.subject + " (seq " + std::to_string(record.seq) + ") dropped: " + why);
    const std::uint64_t seq = record.seq;
    forget(seq);
    for (Gap& gap : gaps_)
        if (gap.told_by == seq)
            gap.told_by = 0;
}

// The event leaves the spool; the next one may go.
void Delivery::forget(std::uint64_t seq)
{
    spool_.acknowledge(seq);
    in_flight_ = false;
    sent_.clear();
    ack_timer_ = EventSource();
}

// Sends what can go now, of what is on disk: in core every pending event,
// in jetstream the oldest one, if none is waiting for its acknowledgement.
void Delivery::pump()
{
    while (!spool_.pending().empty() && spool_.may_send(spool_.pending().front().seq) &&
        (phase_ == Phase::core || (phase_ == Phase::jetstream && !in_flight_))) {
        const Record& record = spool_.pending().front();
        std::optional<std::uint64_t> token;
        if (phase_ == Phase::jetstream)
            token = next_token_++;
        const nats::Published published = send(record, token);
        if (published.outcome == nats::Published::Outcome::no_connection)
            return;  // use() comes with the next connection
        if (!published) {
            drop(record, published.why);
        } else if (!token) {
            deliver(record.seq);
        } else {
            sent_[*token] = record.seq;
            in_flight_ = true;
            ack_timer_ = loop_.after(ack_wait, [this] {
                in_flight_ = false;  // sent again; the stream keeps one
                pump();
                update();
            });
        }
    }
}

// One event, cut to fit the server's max_payload if it must be.
nats::Published Delivery::send(const Record& record, std::optional<std::uint64_t> token)
{
    nats::Message message{record.subject, record.payload, headers_for(record)};
    auto publish = [&] { return token ? link_->request(message, *token) : link_->publish(message); };
    nats::Published published = publish();
    if (published.outcome != nats::Published::Outcome::too_big || max_payload_ <= 0)
        return published;
    auto fitted = nats::fit_event(message.payload, max_payload_ - nats::header_bytes(message.headers));
    if (!fitted)
        return published;
    message.payload = std::move(*fitted);
    published = publish();
    if (published) {
        spdlog::warn("{} cut from {} to {} bytes to fit the server's max_payload of {}", record.subject,
            record.payload.size(), message.payload.size(), max_payload_);
        ++state_.truncated;
    }
    return published;
}

void Delivery::update()
{
    log_durability();
    refresh();
    if (state_ == told_)
        return;
    told_ = state_;
    handlers_.changed();
}

void Delivery::refresh()
{
    state_.delivery = phase_ == Phase::jetstream ? "jetstream" : phase_ == Phase::core ? "core" : "waiting";
    state_.stream = phase_ == Phase::jetstream ? config_.events.stream.name : "";
    state_.durable = phase_ != Phase::core && spool_.durable();
    state_.pending = spool_.pending().size();
    state_.spool_bytes = spool_.bytes();
    state_.spool = spool_.path().string();
    // Health turns degraded when the oldest event has waited too long.
    const bool waiting = !spool_.pending().empty();
    const auto oldest = waiting ? spool_.pending().front().time : std::chrono::system_clock::time_point{};
    if (oldest != state_.oldest_pending || !waiting) {
        state_.oldest_pending = oldest;
        state_.overdue = false;
        overdue_timer_ = EventSource();
        if (waiting) {
            const auto due = oldest + pending_bound - std::chrono::system_clock::now();
            overdue_timer_ = loop_.after(
                std::max(std::chrono::duration_cast<std::chrono::microseconds>(due), std::chrono::microseconds(1)),
                [this] {
                    state_.overdue = true;
                    update();
                });
        }
    }
    log_disk_wait(state_.overdue && !spool_.may_send(spool_.pending().front().seq));
    if (!spool_.durable() && phase_ != Phase::blocked)
        state_.problem = "the spool is not durable: " + spool_.error();
    else if (phase_ == Phase::jetstream || phase_ == Phase::core)
        state_.problem =
            waits_for_disk_ ? "the oldest event is not on disk yet: the spool's fdatasync has not returned" : "";
}

// A hung disk: the oldest event has waited pending_bound, not for NATS but
// for the sync that puts it on disk.
void Delivery::log_disk_wait(bool waits)
{
    if (waits == waits_for_disk_)
        return;
    waits_for_disk_ = waits;
    if (waits)
        spdlog::warn("events wait for the disk: the spool's fdatasync has not returned, and the oldest event "
                     "(seq {}) has waited over {} s",
            spool_.pending().front().seq, pending_bound.count());
    else
        spdlog::info("events no longer wait for the disk");
}

}  // namespace cim::events

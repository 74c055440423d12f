#include "nats/link.hpp"

#include <random>

#include <spdlog/spdlog.h>

namespace cim::nats {

namespace {

// How long to wait for the server to confirm the subscriptions.
constexpr int flush_timeout_ms = 5000;
constexpr int connect_timeout_ms = 2000;
// A dead server (no TCP reset) is noticed after interval * (max out + 1).
constexpr int ping_interval_ms = 10'000;
constexpr int max_pings_out = 2;
// nats.c's own reconnect buffer only covers the moment before a lost
// connection is noticed: the daemon publishes only while connected and keeps
// events itself (Outbox), so stale heartbeats are never replayed.
constexpr int library_buffer_bytes = 64 * 1024;

std::string status_text(natsStatus status)
{
    return natsStatus_GetText(status);
}

// Why the first connect failed, in the server's words where there are some.
std::string connect_failure(natsStatus status)
{
    if (status == NATS_NO_SERVER)
        return "cannot connect to NATS: no server reachable";
    natsStatus code = status;
    std::string text = nats_GetLastError(&code);
    // "(conn.c:1905): Authorization Violation": the source location is noise.
    if (const auto end = text.find("): "); text.rfind('(', 0) == 0 && end != std::string::npos)
        text.erase(0, end + 3);
    if (text.empty())
        text = status_text(status);
    if (status == NATS_CONNECTION_AUTH_FAILED || status == NATS_NOT_PERMITTED)
        return "NATS refused the credentials: " + text;
    return "cannot connect to NATS: " + text;
}

}  // namespace

struct Link::Route {
    enum class Kind { health, service } kind;
    std::size_t endpoint;  // index in service_'s endpoints (health routes)
    Link* link;
};

std::shared_ptr<Link> Link::start(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers)
{
    std::shared_ptr<Link> link(new Link(loop, config, std::move(auth), std::move(handlers)));
    link->supervisor_ = std::thread([link = link.get()] { link->supervise(); });
    return link;
}

Link::Link(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers)
    : loop_(loop), nats_(config.nats), health_subject_(config.subjects.prefix + "." + config.node.id + ".health"),
      fleet_health_subject_(config.subjects.prefix + ".health"), auth_(std::move(auth)), handlers_(std::move(handlers)),
      service_(config.node.id, {{"health", health_subject_}, {"fleet-health", fleet_health_subject_}})
{
}

Link::~Link()
{
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    changed_.notify_all();
    if (supervisor_.joinable())
        supervisor_.join();
}

void Link::post(std::function<void(Link&)> work)
{
    // The loop may run this after the Link is gone (reload replaced it).
    loop_.post([weak = weak_from_this(), work = std::move(work)] {
        if (auto self = weak.lock())
            work(*self);
    });
}

void Link::stop(std::chrono::milliseconds timeout)
{
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
        drain_timeout_ = timeout;
    }
    changed_.notify_all();
}

bool Link::publish(const std::string& subject, const std::string& payload, const Headers& headers)
{
    std::lock_guard lock(mutex_);
    if (!connection_ || !connected_)
        return false;
    natsStatus status = NATS_OK;
    if (headers.empty()) {
        status = natsConnection_Publish(connection_, subject.c_str(), payload.data(), static_cast<int>(payload.size()));
    } else {
        natsMsg* message = nullptr;
        status = natsMsg_Create(&message, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size()));
        for (const auto& [key, value] : headers)
            if (status == NATS_OK)
                status = natsMsgHeader_Set(message, key.c_str(), value.c_str());
        if (status == NATS_OK)
            status = natsConnection_PublishMsg(connection_, message);
        natsMsg_Destroy(message);
    }
    return status == NATS_OK;
}

std::string Link::last_error(natsConnection* connection)
{
    const char* text = nullptr;
    natsConnection_GetLastError(connection, &text);
    return text ? text : "";
}

std::string Link::connected_url(natsConnection* connection)
{
    char url[256] = {};
    natsConnection_GetConnectedUrl(connection, url, sizeof url);
    return url;
}

natsStatus Link::connect(natsConnection** connection)
{
    natsOptions* options = nullptr;
    natsStatus s = natsOptions_Create(&options);
    std::vector<const char*> servers;
    for (const auto& server : nats_.servers)
        servers.push_back(server.c_str());
    if (s == NATS_OK)
        s = natsOptions_SetServers(options, servers.data(), static_cast<int>(servers.size()));
    if (s == NATS_OK)
        s = natsOptions_SetName(options, nats_.name.c_str());
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(options, connect_timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(options, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(options, nats_.reconnect.wait.count());
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(options, nats_.reconnect.jitter.count(), nats_.reconnect.jitter.count());
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(options, library_buffer_bytes);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(options, ping_interval_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(options, max_pings_out);
    // Write replies and events at once instead of waiting for nats.c's
    // flusher thread, which sleeps a millisecond between rounds.
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(options, true);
    // One delivery thread for all subscriptions instead of one each.
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(options, true);

    if (s == NATS_OK && !auth_.credentials_file.empty())
        s = natsOptions_SetUserCredentialsFromFiles(options, auth_.credentials_file.c_str(), nullptr);
    if (s == NATS_OK && !auth_.user.empty())
        s = natsOptions_SetUserInfo(options, auth_.user.c_str(), auth_.password.c_str());
    if (s == NATS_OK && !auth_.token.empty())
        s = natsOptions_SetToken(options, auth_.token.c_str());
    if (s == NATS_OK && !auth_.nkey_public.empty())
        s = natsOptions_SetNKeyFromSeed(options, auth_.nkey_public.c_str(), auth_.nkey_seed_file.c_str());
    if (s == NATS_OK && !auth_.ca_file.empty())
        s = natsOptions_LoadCATrustedCertificates(options, auth_.ca_file.c_str());
    if (s == NATS_OK && !auth_.cert_file.empty())
        s = natsOptions_LoadCertificatesChain(options, auth_.cert_file.c_str(), auth_.key_file.c_str());

    auto on_disconnected = [](natsConnection* nc, void* closure) {
        static_cast<Link*>(closure)->post(
            [reason = last_error(nc)](Link& link) { link.handlers_.disconnected(reason); });
    };
    auto on_reconnected = [](natsConnection* nc, void* closure) {
        static_cast<Link*>(closure)->post([url = connected_url(nc)](Link& link) { link.handlers_.reconnected(url); });
    };
    auto on_closed = [](natsConnection* nc, void* closure) {
        auto* self = static_cast<Link*>(closure);
        {
            std::lock_guard lock(self->mutex_);
            self->closed_ = true;
            // The server's words ("Authorization Violation"); nats.c may
            // close before Connect() returns, and then only this sees them.
            self->close_reason_ = last_error(nc);
        }
        self->changed_.notify_all();
    };
    auto on_error = [](natsConnection* nc, natsSubscription*, natsStatus err, void* closure) {
        static_cast<Link*>(closure)->post(
            [text = status_text(err) + ": " + last_error(nc)](Link& link) { link.handlers_.error(text); });
    };
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(options, on_disconnected, this);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(options, on_reconnected, this);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(options, on_closed, this);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(options, on_error, this);

    // Blocks for at most connect_timeout_ms per server: this is the
    // supervisor's thread, and a failed first connect is retried by its
    // loop, where the server's reason ("Authorization Violation") is known.
    if (s == NATS_OK)
        s = natsConnection_Connect(connection, options);
    natsOptions_Destroy(options);
    if (s == NATS_OK) {
        std::lock_guard lock(mutex_);
        connected_ = true;
    }
    return s;
}

natsStatus Link::subscribe(natsConnection* connection)
{
    auto handler = [](natsConnection* nc, natsSubscription*, natsMsg* message, void* closure) {
        const auto* route = static_cast<const Route*>(closure);
        route->link->on_message(*route, nc, message);
    };
    if (routes_.empty()) {
        routes_.push_back(std::make_unique<Route>(Route{Route::Kind::health, 0, this}));
        routes_.push_back(std::make_unique<Route>(Route{Route::Kind::health, 1, this}));
        for (std::size_t i = 0; i < service_.subjects().size(); ++i)
            routes_.push_back(std::make_unique<Route>(Route{Route::Kind::service, 0, this}));
    }
    std::vector<std::string> subjects{health_subject_, fleet_health_subject_};
    for (auto& subject : service_.subjects())
        subjects.push_back(subject);

    for (std::size_t i = 0; i < subjects.size(); ++i) {
        natsSubscription* subscription = nullptr;
        const natsStatus s =
            natsConnection_Subscribe(&subscription, connection, subjects[i].c_str(), handler, routes_[i].get());
        if (s != NATS_OK)
            return s;
        std::lock_guard lock(mutex_);
        subscriptions_.push_back(subscription);
    }
    return NATS_OK;
}

void Link::on_message(const Route& route, natsConnection* connection, natsMsg* message)
{
    const auto begin = std::chrono::steady_clock::now();
    const char* reply = natsMsg_GetReply(message);
    if (reply && *reply) {
        std::optional<std::string> body;
        if (route.kind == Route::Kind::health)
            body = handlers_.health();
        else
            body = service_.answer(natsMsg_GetSubject(message));
        if (body)
            natsConnection_Publish(connection, reply, body->data(), static_cast<int>(body->size()));
    }
    natsMsg_Destroy(message);
    if (route.kind == Route::Kind::health)
        service_.record(route.endpoint, std::chrono::steady_clock::now() - begin);
}

void Link::serve(natsConnection* connection)
{
    std::unique_lock lock(mutex_);
    if (!closed_ && !stop_) {
        lock.unlock();
        // READY waits for this: the server has every subscription.
        const natsStatus s = natsConnection_FlushTimeout(connection, flush_timeout_ms);
        if (s == NATS_OK)
            post([url = connected_url(connection)](Link& link) { link.handlers_.connected(url); });
        else
            post([text = "subscriptions not confirmed: " + status_text(s)](Link& link) { link.handlers_.error(text); });
        lock.lock();
    }
    changed_.wait(lock, [&] { return closed_ || stop_; });
    if (closed_)
        return;
    const auto timeout = drain_timeout_;
    lock.unlock();
    if (natsConnection_DrainTimeout(connection, timeout.count()) == NATS_OK) {
        lock.lock();
        // nats.c closes the connection when the drain ends or times out.
        changed_.wait_for(lock, timeout + std::chrono::milliseconds(500), [&] { return closed_; });
    } else {
        natsConnection_Close(connection);
    }
}

void Link::supervise()
{
    std::mt19937 random(std::random_device{}());
    auto pause = nats_.reconnect.wait;
    while (true) {
        natsConnection* connection = nullptr;
        natsStatus s = connect(&connection);
        if (s == NATS_OK) {
            {
                std::lock_guard lock(mutex_);
                connection_ = connection;
            }
            s = subscribe(connection);
            if (s != NATS_OK)
                natsConnection_Close(connection);
        }
        std::string failure;
        if (s == NATS_OK) {
            serve(connection);
            pause = nats_.reconnect.wait;  // it worked once: start the backoff afresh
        } else {
            failure = connect_failure(s);
        }
        {
            std::lock_guard lock(mutex_);
            if (s == NATS_OK)
                failure = "NATS connection closed" + (close_reason_.empty() ? "" : ": " + close_reason_);
            close_reason_.clear();
            for (natsSubscription* subscription : subscriptions_)
                natsSubscription_Destroy(subscription);
            subscriptions_.clear();
            connection_ = nullptr;
            connected_ = false;
            closed_ = false;
        }
        natsConnection_Destroy(connection);

        std::unique_lock lock(mutex_);
        if (stop_)
            break;
        lock.unlock();
        post([failure](Link& link) { link.handlers_.error(failure); });
        // Back off up to a minute, with jitter so a fleet spreads out.
        std::uniform_int_distribution<std::int64_t> jitter(0, nats_.reconnect.jitter.count());
        const auto delay = pause + std::chrono::milliseconds(jitter(random));
        pause = std::min(pause * 2, std::chrono::milliseconds(60'000));
        lock.lock();
        if (changed_.wait_for(lock, delay, [&] { return stop_; }))
            break;
    }
    post([](Link& link) { link.handlers_.stopped(); });
}

}  // namespace cim::nats

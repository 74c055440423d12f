#include "nats/link.hpp"

#include <algorithm>
#include <cstdint>
#include <list>
#include <random>
#include <thread>
#include <unordered_map>

namespace cim::nats {

namespace {

// How long to wait for the server to confirm the subscriptions.
constexpr int flush_timeout_ms = 5000;
constexpr int connect_timeout_ms = 2000;
// A dead server (no TCP reset) is noticed after interval * (max out + 1).
constexpr int ping_interval_ms = 10'000;
constexpr int max_pings_out = 2;
// A server that stops reading fails the write after this instead of blocking
// the event loop (heartbeats and events are written from it).
constexpr int write_deadline_ms = 2000;
// nats.c's own reconnect buffer only covers the moment before a lost
// connection is noticed: the daemon publishes only while connected and keeps
// events itself (Outbox), so stale heartbeats are never replayed.
constexpr int library_buffer_bytes = 64 * 1024;
constexpr std::chrono::milliseconds max_backoff{60'000};
// A drain that nats.c has not ended by its own timeout plus this is cut short.
constexpr std::chrono::milliseconds drain_grace{500};

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

std::string last_error(natsConnection* connection)
{
    const char* text = nullptr;
    natsConnection_GetLastError(connection, &text);
    return text ? text : "";
}

std::string connected_url(natsConnection* connection)
{
    char url[256] = {};
    natsConnection_GetConnectedUrl(connection, url, sizeof url);
    return url;
}

// Process-wide state that is never destroyed: nats.c's threads may still
// use it while the process exits.
template <typename T> T& process_wide()
{
    static T* instance = new T;
    return *instance;
}

// Every Link's supervisor thread. A thread is joined once it has finished
// (never on the loop while it still works), so none outlives main() and
// each one's thread-local state (nats.c's, OpenSSL's) is freed.
class Supervisors {
public:
    void start(std::function<void()> work)
    {
        std::lock_guard lock(mutex_);
        join_finished();
        Entry& entry = threads_.emplace_back();
        entry.thread = std::thread([this, &entry, work = std::move(work)]() mutable {
            work();
            work = nullptr;  // what it holds (the Link) goes on this thread
            std::lock_guard lock(mutex_);
            entry.finished = true;
            done_.notify_all();
        });
    }

    bool wait_for_all(std::chrono::milliseconds bound)
    {
        std::unique_lock lock(mutex_);
        if (!done_.wait_for(lock, bound, [&] {
                return std::all_of(threads_.begin(), threads_.end(), [](const Entry& e) { return e.finished; });
            }))
            return false;
        join_finished();
        return true;
    }

private:
    struct Entry {
        std::thread thread;
        bool finished = false;
    };

    void join_finished()  // under mutex_: a finished thread is only exiting
    {
        for (auto it = threads_.begin(); it != threads_.end();) {
            if (!it->finished) {
                ++it;
                continue;
            }
            it->thread.join();
            it = threads_.erase(it);
        }
    }

    std::mutex mutex_;
    std::condition_variable done_;
    std::list<Entry> threads_;
};

}  // namespace

// nats.c may call a connection's callbacks after natsConnection_Connect has
// failed (an authorization error closes the connection from inside it), with
// no way to tell when. So connection callbacks carry a key, not a pointer:
// the key of an attempt that is over finds no Link.
class Link::Attempts {
public:
    void* add(std::weak_ptr<Link> link)
    {
        std::lock_guard lock(mutex_);
        const std::uintptr_t key = next_++;
        links_.emplace(key, std::move(link));
        return reinterpret_cast<void*>(key);
    }

    void remove(void* key)
    {
        std::lock_guard lock(mutex_);
        links_.erase(reinterpret_cast<std::uintptr_t>(key));
    }

    std::shared_ptr<Link> find(void* key)
    {
        std::lock_guard lock(mutex_);
        const auto it = links_.find(reinterpret_cast<std::uintptr_t>(key));
        return it == links_.end() ? nullptr : it->second.lock();
    }

private:
    std::mutex mutex_;
    std::uintptr_t next_ = 1;
    std::unordered_map<std::uintptr_t, std::weak_ptr<Link>> links_;
};

struct Link::Route {
    enum class Kind { health, service } kind;
    std::size_t endpoint;  // index in service_'s endpoints (health routes)
    Link* link;
};

std::shared_ptr<Link> Link::start(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers)
{
    std::shared_ptr<Link> link(new Link(loop, config, std::move(auth), std::move(handlers)));
    process_wide<Supervisors>().start([link] { link->supervise(); });
    return link;
}

bool Link::wait_for_all_stopped(std::chrono::milliseconds bound)
{
    return process_wide<Supervisors>().wait_for_all(bound);
}

Link::Link(EventLoop& loop, const config::Config& config, Auth auth, Handlers handlers)
    : loop_(loop), nats_(config.nats), health_subject_(config.subjects.prefix + "." + config.node.id + ".health"),
      fleet_health_subject_(config.subjects.prefix + ".health"), auth_(std::move(auth)), handlers_(std::move(handlers)),
      service_(config.node.id, {{"health", health_subject_}, {"fleet-health", fleet_health_subject_}})
{
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
    std::lock_guard lock(mutex_);
    stop_ = true;
    drain_timeout_ = std::max(timeout, std::chrono::milliseconds(1));  // 0 is "no timeout" to nats.c
    changed_.notify_all();
}

bool Link::stopping()
{
    std::lock_guard lock(mutex_);
    return stop_;
}

template <typename Work> void Link::with_current(void* key, Work work)
{
    auto link = process_wide<Attempts>().find(key);
    if (!link)
        return;
    std::lock_guard lock(link->mutex_);
    if (link->attempt_ == key)
        work(*link);
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

natsStatus Link::connect(natsConnection** connection, void* attempt)
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
    if (s == NATS_OK)
        s = natsOptions_SetWriteDeadline(options, write_deadline_ms);
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

    auto on_disconnected = [](natsConnection* nc, void* key) {
        with_current(key, [reason = last_error(nc)](Link& link) {
            link.post([reason](Link& self) { self.handlers_.disconnected(reason); });
        });
    };
    auto on_reconnected = [](natsConnection* nc, void* key) {
        with_current(key, [url = connected_url(nc)](Link& link) {
            link.post([url](Link& self) { self.handlers_.reconnected(url); });
        });
    };
    auto on_error = [](natsConnection* nc, natsSubscription*, natsStatus err, void* key) {
        with_current(key, [text = status_text(err) + ": " + last_error(nc)](Link& link) {
            link.post([text](Link& self) { self.handlers_.error(text); });
        });
    };
    auto on_closed = [](natsConnection* nc, void* key) {
        // The server's words ("Authorization Violation"): nats.c may close
        // before Connect() returns, and then only this sees them.
        with_current(key, [reason = last_error(nc)](Link& link) {
            link.closed_ = true;
            link.close_reason_ = reason;
            link.changed_.notify_all();
        });
    };
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(options, on_disconnected, attempt);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(options, on_reconnected, attempt);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(options, on_closed, attempt);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(options, on_error, attempt);

    // Blocks for at most connect_timeout_ms per server: this is the
    // supervisor's thread, and a failed first connect is retried by its
    // loop, where the server's reason ("Authorization Violation") is known.
    if (s == NATS_OK)
        s = natsConnection_Connect(connection, options);
    natsOptions_Destroy(options);
    return s;
}

natsStatus Link::subscribe(natsConnection* connection)
{
    auto handler = [](natsConnection* nc, natsSubscription*, natsMsg* message, void* closure) {
        const auto* route = static_cast<const Route*>(closure);
        route->link->on_message(*route, nc, message);
    };
    // After a subscription's last message: the Link may not go before.
    auto complete = [](void* closure) {
        auto* link = static_cast<Link*>(closure);
        std::lock_guard lock(link->mutex_);
        --link->live_subscriptions_;
        link->changed_.notify_all();
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
        natsStatus s =
            natsConnection_Subscribe(&subscription, connection, subjects[i].c_str(), handler, routes_[i].get());
        if (s != NATS_OK)
            return s;
        std::lock_guard lock(mutex_);
        subscriptions_.push_back(subscription);
        ++live_subscriptions_;  // before the callback can run
        s = natsSubscription_SetOnCompleteCB(subscription, complete, this);
        if (s != NATS_OK) {
            --live_subscriptions_;
            return s;
        }
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
    changed_.wait(lock, [&] { return closed_ || stop_; });
    if (closed_)
        return;
    const auto timeout = drain_timeout_;
    lock.unlock();
    // The server stops sending, what is in flight is delivered, then nats.c
    // closes the connection, by its timeout at the latest.
    if (natsConnection_DrainTimeout(connection, timeout.count()) == NATS_OK) {
        lock.lock();
        if (changed_.wait_for(lock, timeout + drain_grace, [&] { return closed_; }))
            return;
        lock.unlock();
    }
    natsConnection_Close(connection);
}

std::string Link::run_connection(bool& served)
{
    void* attempt = process_wide<Attempts>().add(weak_from_this());
    {
        std::lock_guard lock(mutex_);
        attempt_ = attempt;
        closed_ = false;
        close_reason_.clear();
    }
    natsConnection* connection = nullptr;
    natsStatus s = connect(&connection, attempt);
    std::string reason;
    if (s != NATS_OK) {
        reason = connect_failure(s);
    } else {
        {
            std::lock_guard lock(mutex_);
            connection_ = connection;
            connected_ = true;
        }
        s = subscribe(connection);
        // READY waits for this: the server has every subscription.
        if (s == NATS_OK)
            s = natsConnection_FlushTimeout(connection, flush_timeout_ms);
        if (s != NATS_OK) {
            // Kept, such a connection would never count as connected: start over.
            reason = "subscriptions not confirmed: " + status_text(s);
        } else if (!stopping()) {
            served = true;
            post([url = connected_url(connection)](Link& link) { link.handlers_.connected(url); });
        }
        if (s == NATS_OK)
            serve(connection);
        natsConnection_Close(connection);  // nothing when already closed

        // nats.c's last calls into this Link are the closed callback and
        // each subscription's completion; only after them may it go.
        std::vector<natsSubscription*> subscriptions;
        {
            std::unique_lock lock(mutex_);
            changed_.wait(lock, [&] { return closed_ && live_subscriptions_ == 0; });
            if (served)
                reason = "NATS connection closed" + (close_reason_.empty() ? "" : ": " + close_reason_);
            connection_ = nullptr;
            connected_ = false;
            subscriptions.swap(subscriptions_);
        }
        for (natsSubscription* subscription : subscriptions)
            natsSubscription_Destroy(subscription);
        natsConnection_Destroy(connection);
    }
    process_wide<Attempts>().remove(attempt);
    return reason;
}

void Link::supervise()
{
    std::mt19937 random(std::random_device{}());
    auto pause = nats_.reconnect.wait;
    while (!stopping()) {
        bool served = false;
        const std::string reason = run_connection(served);
        if (served)
            pause = nats_.reconnect.wait;  // it worked once: start the backoff afresh
        std::unique_lock lock(mutex_);
        if (stop_)
            break;
        lock.unlock();
        post([reason](Link& link) { link.handlers_.error(reason); });
        // Back off up to a minute, with jitter so a fleet spreads out.
        std::uniform_int_distribution<std::int64_t> jitter(0, nats_.reconnect.jitter.count());
        const auto delay = pause + std::chrono::milliseconds(jitter(random));
        pause = std::min(pause * 2, max_backoff);
        lock.lock();
        if (changed_.wait_for(lock, delay, [&] { return stop_; }))
            break;
    }
    post([](Link& link) { link.handlers_.stopped(); });
}

}  // namespace cim::nats

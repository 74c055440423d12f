#include "nats/link.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <random>
#include <thread>
#include <unordered_map>

#include "nats/library.hpp"
#include "nats/options.hpp"
#include "util/ids.hpp"
#include "util/thread.hpp"

namespace cim::nats {

namespace {

// How long to wait for the server to confirm the subscriptions.
constexpr int flush_timeout_ms = 5000;
// A link that swallows everything (no TCP reset) is noticed when a PING goes
// unanswered for a whole interval: within 2 * interval, 30 s. Each PING
// wakes the daemon twice (the timer, the PONG), so few and far between.
constexpr int ping_interval_ms = 15'000;
constexpr int max_pings_out = 1;
// A server that stops reading is given up when a write has moved nothing for
// this long (SocketLoop); nats.c's own writes while it connects keep to it too.
constexpr std::chrono::milliseconds write_deadline{1000};
// Health replies are not queued beyond this while the server takes none: a
// server that reads takes that much in milliseconds, and one that does not
// is given up after the write deadline anyway.
constexpr int reply_backlog_bytes = 4 << 20;
// A drain that nats.c has not ended by its own timeout plus this is cut short.
constexpr std::chrono::milliseconds drain_grace{500};

// Why a connection was lost, when there is more to say than that it ended
// (the server closed it, or reset it under a read or a write): a stale
// connection, a write deadline passed, the server's own words.
std::string loss_reason(natsConnection* connection)
{
    const char* text = nullptr;
    switch (natsConnection_GetLastError(connection, &text)) {
    case NATS_OK:
    case NATS_CONNECTION_CLOSED:
    case NATS_IO_ERROR:
        return "";
    default:
        return text ? text : "";
    }
}

std::string connected_url(natsConnection* connection)
{
    char url[256] = {};
    natsConnection_GetConnectedUrl(connection, url, sizeof url);
    return url;
}

// The subject in a server's 'Permissions Violation for Publish to "x"'.
std::string quoted_subject(const std::string& text)
{
    const std::size_t open = text.find('"');
    const std::size_t close = open == std::string::npos ? open : text.find('"', open + 1);
    return close == std::string::npos ? std::string() : text.substr(open + 1, close - open - 1);
}

natsStatus send(natsConnection* connection, const Message& message, const std::string& reply = {})
{
    const int size = static_cast<int>(message.payload.size());
    const char* reply_to = reply.empty() ? nullptr : reply.c_str();
    if (message.headers.empty() && !reply_to)
        return natsConnection_Publish(connection, message.subject.c_str(), message.payload.data(), size);
    if (message.headers.empty())
        return natsConnection_PublishRequest(
            connection, message.subject.c_str(), reply_to, message.payload.data(), size);
    natsMsg* msg = nullptr;
    natsStatus status = natsMsg_Create(&msg, message.subject.c_str(), reply_to, message.payload.data(), size);
    for (const auto& [key, value] : message.headers)
        if (status == NATS_OK)
            status = natsMsgHeader_Set(msg, key.c_str(), value.c_str());
    if (status == NATS_OK)
        status = natsConnection_PublishMsg(connection, msg);
    natsMsg_Destroy(msg);
    return status;
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
        try {
            entry.thread = util::start_thread<std::thread>(
                "the NATS connection's thread", [this, &entry, work = std::move(work)]() mutable {
                    work();
                    work = nullptr;  // what it holds (the Link) goes on this thread
                    std::lock_guard lock(mutex_);
                    entry.finished = true;
                    done_.notify_all();
                });
        } catch (...) {
            threads_.pop_back();  // nothing to wait for
            throw;
        }
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
    : loop_(loop), nats_(config.nats), auth_(std::move(auth)), handlers_(std::move(handlers)),
      service_(config.node.id,
          {{"health", config.subjects.prefix + "." + config.node.id + ".health"},
              {"fleet-health", config.subjects.prefix + ".health"}}),
      health_subscriptions_(service_.endpoints().size())
{
    for (std::size_t i = 0; i < service_.endpoints().size(); ++i)
        routes_.push_back({Route::Kind::health, service_.endpoints()[i].subject, i, this});
    for (const std::string& subject : service_.subjects())
        routes_.push_back({Route::Kind::service, subject, 0, this});
    // Not natsInbox_Create: that starts nats.c (OpenSSL's configuration, its
    // threads) here on the loop, which would wait milliseconds for it before
    // writing `started`; the supervisor thread starts it while the loop goes on.
    inbox_ = "_INBOX." + util::uuid_v7();
    routes_.push_back({Route::Kind::answer, inbox_ + ".*", 0, this});
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

Published Link::publish(const Message& message)
{
    return send_now(message, {});
}

Published Link::request(const Message& message, std::uint64_t token)
{
    return send_now(message, inbox_ + "." + std::to_string(token));
}

Published Link::send_now(const Message& message, const std::string& reply)
{
    using Outcome = Published::Outcome;
    std::lock_guard lock(mutex_);
    if (!connection_ || !connected_)
        return {Outcome::no_connection, "not connected to NATS"};
    const SocketLoop::Writing writing(*socket_loop_, connection_);
    const natsStatus status = send(connection_, message, reply);
    switch (status) {
    case NATS_OK:
        return {};
    case NATS_MAX_PAYLOAD:
        return {Outcome::too_big,
            std::to_string(message.payload.size() + static_cast<std::size_t>(header_bytes(message.headers))) +
                " bytes, over the server's max_payload of " +
                std::to_string(natsConnection_GetMaxPayload(connection_))};
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_DRAINING:
    case NATS_IO_ERROR:
    case NATS_TIMEOUT:  // the write deadline: the connection is going down
        return {Outcome::no_connection, status_text(status)};
    default:
        return {Outcome::failed, status_text(status)};
    }
}

natsStatus Link::connect(natsConnection** connection, void* attempt, SocketLoop& socket_loop)
{
    natsOptions* options = nullptr;
    natsStatus s = natsOptions_Create(&options);
    if (s == NATS_OK)
        s = set_connection_options(options, nats_, auth_);
    if (s == NATS_OK)
        s = socket_loop.use_for(options);
    // No reconnects by nats.c: with an event loop of the caller's it keeps
    // its protocol parser from one connection to the next (nats.c #1007),
    // so a connection lost in the middle of a message would make every later
    // one fail on its first read, for ever. supervise() makes a new
    // connection instead, after the same pause nats.c would have made.
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(options, false);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(options, ping_interval_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(options, max_pings_out);
    if (s == NATS_OK)
        s = natsOptions_SetWriteDeadline(options, write_deadline.count());
    // Write replies and events at once instead of waiting for nats.c's
    // flusher thread, which sleeps a millisecond between rounds.
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(options, true);
    // One delivery thread for all subscriptions instead of one each.
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(options, true);

    auto on_disconnected = [](natsConnection* nc, void* key) {
        with_current(key, [reason = loss_reason(nc)](Link& link) {
            link.post([reason](Link& self) { self.handlers_.disconnected(reason); });
        });
    };
    auto on_error = [](natsConnection*, natsSubscription*, natsStatus err, void* key) {
        // nats.c sets this thread's last error to the server's words for
        // this very error just before the call.
        std::string text = last_error();
        with_current(key, [err, text](Link& link) { link.on_async_error(err, text); });
    };
    auto on_closed = [](natsConnection*, void* key) {
        with_current(key, [](Link& link) {
            link.closed_ = true;
            link.changed_.notify_all();
        });
    };
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(options, on_disconnected, attempt);
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

// Under mutex_ (with_current): what an asynchronous error means.
void Link::on_async_error(natsStatus status, const std::string& text)
{
    if (status == NATS_NOT_PERMITTED && text.find("for Subscription to") != std::string::npos) {
        // The server took a subscription's permission away (its config
        // reloaded): a connection that cannot answer is given up and retried.
        give_up_ = "NATS refused a subscription: " + text;
        changed_.notify_all();
        return;
    }
    if (status == NATS_NOT_PERMITTED && text.find("for Publish to") != std::string::npos) {
        post([subject = quoted_subject(text), text](Link& self) { self.handlers_.refused(subject, text); });
        return;
    }
    post([text = status_text(status) + (text.empty() ? "" : ": " + text)](Link& self) { self.handlers_.error(text); });
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
    for (const Route& route : routes_) {
        natsSubscription* subscription = nullptr;
        if (route.kind == Route::Kind::health) {
            const natsStatus s = natsConnection_SubscribeSync(&subscription, connection, route.subject.c_str());
            if (s != NATS_OK)
                return s;
            std::lock_guard lock(mutex_);
            subscriptions_.push_back(subscription);
            health_subscriptions_[route.endpoint].store(subscription, std::memory_order_release);
            continue;
        }
        natsStatus s = natsConnection_Subscribe(
            &subscription, connection, route.subject.c_str(), handler, const_cast<Route*>(&route));
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
    const char* reply = natsMsg_GetReply(message);
    if (route.kind == Route::Kind::answer) {
        const std::string subject = natsMsg_GetSubject(message);
        Answer answer{std::strtoull(subject.c_str() + inbox_.size() + 1, nullptr, 10),
            std::string(natsMsg_GetData(message), static_cast<std::size_t>(natsMsg_GetDataLength(message))),
            natsMsg_IsNoResponders(message)};
        post([answer = std::move(answer)](Link& link) { link.handlers_.answered(answer); });
    } else if (reply && *reply) {  // without a reply subject it is no request: nothing to answer
        Message answer = service_.answer(natsMsg_GetSubject(message));
        answer.subject = reply;
        send(connection, answer);
    }
    natsMsg_Destroy(message);
}

void Link::answer_health(natsConnection* connection)
{
    std::string& text = health_reply_;
    for (std::size_t endpoint = 0; endpoint < health_subscriptions_.size(); ++endpoint) {
        natsSubscription* subscription = health_subscriptions_[endpoint].load(std::memory_order_acquire);
        int pending = 0;
        if (!subscription || natsSubscription_GetPending(subscription, &pending, nullptr) != NATS_OK)
            continue;
        natsMsg* message = nullptr;
        for (; pending > 0 && natsSubscription_NextMsg(&message, subscription, 0) == NATS_OK; --pending) {
            const auto begin = std::chrono::steady_clock::now();
            // Without a reply subject it is no request: nothing to answer or count.
            if (const char* reply = natsMsg_GetReply(message); reply && *reply) {
                std::string error;
                if (const int backlog = natsConnection_Buffered(connection); backlog > reply_backlog_bytes) {
                    error = "reply not sent: the server has not taken the last " + std::to_string(backlog) + " bytes";
                } else {
                    handlers_.health(text, begin);
                    const natsStatus sent =
                        natsConnection_Publish(connection, reply, text.data(), static_cast<int>(text.size()));
                    if (sent != NATS_OK)
                        error = "reply not sent: " + status_text(sent);
                }
                service_.record(endpoint, std::chrono::steady_clock::now() - begin, error);
            }
            natsMsg_Destroy(message);
        }
    }
}

void Link::stop_health()
{
    // Unsubscribed, not drained: nats.c would wait the whole drain for a
    // synchronous subscription with nothing pending. What is pending was
    // answered after its read; only what is still on its way goes unanswered.
    for (auto& slot : health_subscriptions_)
        if (natsSubscription* subscription = slot.exchange(nullptr))
            natsSubscription_Unsubscribe(subscription);
}

void Link::serve(natsConnection* connection)
{
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return closed_ || stop_ || !give_up_.empty(); });
    if (closed_ || !give_up_.empty())
        return;
    const auto timeout = drain_timeout_;
    lock.unlock();
    stop_health();
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

std::string Link::run_connection()
{
    void* attempt = process_wide<Attempts>().add(weak_from_this());
    {
        std::lock_guard lock(mutex_);
        attempt_ = attempt;
        closed_ = false;
        give_up_.clear();
    }
    std::unique_ptr<SocketLoop> socket_loop;
    try {
        socket_loop = std::make_unique<SocketLoop>(
            write_deadline, [this](natsConnection* connection) { answer_health(connection); });
    } catch (const std::exception& e) {
        process_wide<Attempts>().remove(attempt);
        return e.what();  // tried again after the reconnect pause, as a failed connect
    }
    natsConnection* connection = nullptr;
    natsStatus s = connect(&connection, attempt, *socket_loop);
    std::string reason;
    if (s != NATS_OK) {
        reason = connect_failure(s);
    } else {
        {
            std::lock_guard lock(mutex_);
            connection_ = connection;
            socket_loop_ = socket_loop.get();
            connected_ = true;
        }
        {
            // Every SUB in one write, instead of a wake of the loop's thread for each.
            const SocketLoop::Writing writing(*socket_loop, connection);
            s = subscribe(connection);
        }
        socket_loop->kick();  // for a request that came before its subscription was known
        // READY waits for this: the server has every subscription.
        if (s == NATS_OK)
            s = natsConnection_FlushTimeout(connection, flush_timeout_ms);
        const char* refusal = nullptr;
        if (s != NATS_OK) {
            // Kept, such a connection would never count as connected: start over.
            reason = "subscriptions not confirmed: " + status_text(s);
        } else if (natsConnection_GetLastError(connection, &refusal) == NATS_NOT_PERMITTED) {
            // The server answers a refused SUB with -ERR before the flush's
            // PONG: a daemon that cannot be asked is not ready.
            reason = std::string("NATS refused a subscription: ") + (refusal ? refusal : "");
            s = NATS_NOT_PERMITTED;
        } else if (!stopping()) {
            post([server = Server{connected_url(connection), natsConnection_GetMaxPayload(connection)}](
                     Link& link) { link.handlers_.connected(server); });
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
            // A served connection's loss is not an error to tell here:
            // the disconnected callback told it, and supervise() reconnects.
            if (!give_up_.empty())
                reason = give_up_;
            connection_ = nullptr;
            socket_loop_ = nullptr;
            connected_ = false;
            subscriptions.swap(subscriptions_);
        }
        for (auto& slot : health_subscriptions_)
            slot.store(nullptr);
        socket_loop.reset();  // once nats.c has detached it: no read uses the connection after this
        for (natsSubscription* subscription : subscriptions)
            natsSubscription_Destroy(subscription);
        natsConnection_Destroy(connection);
    }
    process_wide<Attempts>().remove(attempt);
    return reason;
}

void Link::supervise()
{
    Library::wait_started();  // nats.c refuses calls while it starts
    std::mt19937 random(std::random_device{}());
    while (!stopping()) {
        const std::string reason = run_connection();
        std::unique_lock lock(mutex_);
        if (stop_)
            break;
        lock.unlock();
        if (!reason.empty())
            post([reason](Link& link) { link.handlers_.error(reason); });
        // The pause nats.c would make between its reconnects: reconnect.wait plus
        // jitter, so a fleet spreads out and comes back as soon as the server does.
        std::uniform_int_distribution<std::int64_t> jitter(0, nats_.reconnect.jitter.count());
        const auto delay = nats_.reconnect.wait + std::chrono::milliseconds(jitter(random));
        lock.lock();
        if (changed_.wait_for(lock, delay, [&] { return stop_; }))
            break;
    }
    post([](Link& link) { link.handlers_.stopped(); });
}

}  // namespace cim::nats

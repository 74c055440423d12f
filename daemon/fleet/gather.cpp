#include "fleet/gather.hpp"

#include <memory>

#include <nats/nats.h>

#include "nats/options.hpp"

namespace cim::fleet {

namespace {

template <auto destroy> struct Destroy {
    template <typename T> void operator()(T* object) const { destroy(object); }
};
using Options = std::unique_ptr<natsOptions, Destroy<natsOptions_Destroy>>;
using Connection = std::unique_ptr<natsConnection, Destroy<natsConnection_Destroy>>;  // closes first
using Subscription = std::unique_ptr<natsSubscription, Destroy<natsSubscription_Destroy>>;
using Inbox = std::unique_ptr<natsInbox, Destroy<natsInbox_Destroy>>;
using Message = std::unique_ptr<natsMsg, Destroy<natsMsg_Destroy>>;

std::string why(const std::string& doing, natsStatus status)
{
    const std::string text = nats::last_error();
    return doing + ": " + (text.empty() ? nats::status_text(status) : text);
}

Gathered failed(std::string why)
{
    return {{}, false, std::move(why)};
}

}  // namespace

Gathered gather(const config::NatsConfig& nats, const nats::Auth& auth, const std::string& subject,
    std::chrono::milliseconds timeout, const std::function<bool(const std::string& answer)>& enough)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    natsOptions* made_options = nullptr;
    natsStatus s = natsOptions_Create(&made_options);
    const Options options(made_options);
    if (s == NATS_OK)
        s = nats::set_connection_options(options.get(), nats, auth);
    // One attempt: a tool that reports on the fleet reports an outage too.
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(options.get(), false);
    if (s != NATS_OK)
        return failed(why("cannot set up the NATS connection", s));
    natsConnection* made_connection = nullptr;
    s = natsConnection_Connect(&made_connection, options.get());
    const Connection connection(made_connection);
    if (s != NATS_OK)
        return failed(nats::connect_failure(s));

    natsInbox* made_inbox = nullptr;
    natsSubscription* made_subscription = nullptr;
    s = natsInbox_Create(&made_inbox);
    const Inbox inbox(made_inbox);
    if (s == NATS_OK)
        s = natsConnection_SubscribeSync(&made_subscription, connection.get(), inbox.get());
    const Subscription subscription(made_subscription);
    // The deadline bounds what is kept: a large fleet must not make nats.c
    // drop answers as a slow consumer.
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(subscription.get(), -1, -1);
    if (s == NATS_OK)
        s = natsConnection_PublishRequest(connection.get(), subject.c_str(), inbox.get(), "", 0);
    // The server has the subscription and the request, and has said so if
    // its permissions refuse either.
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(connection.get(), std::max<std::int64_t>(timeout.count(), 1));
    const char* refusal = nullptr;
    if (s == NATS_OK && natsConnection_GetLastError(connection.get(), &refusal) == NATS_NOT_PERMITTED)
        return failed(std::string("NATS refused the request: ") + (refusal ? refusal : ""));
    if (s != NATS_OK)
        return failed(why("cannot send the request on " + subject, s));

    Gathered gathered;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        natsMsg* received = nullptr;
        s = natsSubscription_NextMsg(&received, subscription.get(), left.count());
        const Message message(received);
        if (s == NATS_TIMEOUT)
            break;
        if (s == NATS_NO_RESPONDERS) {  // the server's 503, when nobody subscribes
            gathered.no_responders = true;
            break;
        }
        if (s != NATS_OK)
            return failed(why("lost NATS while gathering answers", s));
        gathered.answers.emplace_back(
            natsMsg_GetData(message.get()), static_cast<std::size_t>(natsMsg_GetDataLength(message.get())));
        if (enough(gathered.answers.back()))
            break;
    }
    return gathered;
}

}  // namespace cim::fleet

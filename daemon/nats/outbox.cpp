#include "nats/outbox.hpp"

#include <cstdint>

namespace cim::nats {

std::int64_t Outbox::size_of(const Message& message)
{
    return static_cast<std::int64_t>(message.subject.size() + message.payload.size()) + header_bytes(message.headers);
}

bool Outbox::push(Message message, Place place)
{
    const std::int64_t size = size_of(message);
    if (bytes_ + size > budget_)
        return false;
    bytes_ += size;
    if (place == Place::first)
        messages_.push_front(std::move(message));
    else
        messages_.push_back(std::move(message));
    return true;
}

void Outbox::flush(const std::function<Published(Message&)>& send)
{
    while (!messages_.empty()) {
        const std::int64_t size = size_of(messages_.front());
        const Published published = send(messages_.front());
        if (published.outcome == Published::Outcome::no_connection)
            return;
        bytes_ -= size;
        messages_.pop_front();
    }
}

}  // namespace cim::nats

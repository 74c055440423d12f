#include "nats/outbox.hpp"

#include <cstdint>

namespace cim::nats {

std::int64_t Outbox::size_of(const Message& message)
{
    std::size_t size = message.subject.size() + message.payload.size();
    for (const auto& [key, value] : message.headers)
        size += key.size() + value.size();
    return static_cast<std::int64_t>(size);
}

bool Outbox::push(Message message)
{
    const std::int64_t size = size_of(message);
    if (bytes_ + size > budget_) {
        ++dropped_;
        return false;
    }
    bytes_ += size;
    messages_.push_back(std::move(message));
    return true;
}

void Outbox::flush(const std::function<bool(const Message&)>& send)
{
    while (!messages_.empty() && send(messages_.front())) {
        bytes_ -= size_of(messages_.front());
        messages_.pop_front();
    }
}

}  // namespace cim::nats

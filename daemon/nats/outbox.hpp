#pragma once

#include <cstdint>
#include <deque>
#include <functional>

#include "nats/connection.hpp"

namespace cim::nats {

// Events raised while NATS is away, kept in order up to a byte budget
// (nats.reconnect.buffer_bytes) and sent once it is back. What does not fit,
// or what the server will never take, is dropped, and the caller counts it:
// never silently lost. Loop thread only.
class Outbox {
public:
    explicit Outbox(std::int64_t budget_bytes) : budget_(budget_bytes) { }

    void set_budget(std::int64_t budget_bytes) { budget_ = budget_bytes; }

    enum class Place { last, first };

    // False when it does not fit.
    bool push(Message message, Place place = Place::last);

    // Sends in order until `send` finds no connection; that one and the
    // rest stay. A message `send` can never get through (too big, refused)
    // is dropped (`send` says why), so it cannot hold up the ones behind it.
    void flush(const std::function<Published(Message&)>& send);

    std::size_t size() const { return messages_.size(); }
    std::int64_t bytes() const { return bytes_; }

private:
    static std::int64_t size_of(const Message& message);

    std::int64_t budget_;
    std::int64_t bytes_ = 0;
    std::deque<Message> messages_;
};

}  // namespace cim::nats

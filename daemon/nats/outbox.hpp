#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "nats/link.hpp"

namespace cim::nats {

// Events raised while NATS is away, kept in order up to a byte budget
// (nats.reconnect.buffer_bytes) and sent once it is back. What does not fit
// is dropped and counted, never silently lost. Loop thread only.
class Outbox {
public:
    struct Message {
        std::string subject;
        std::string payload;
        Headers headers;
    };

    explicit Outbox(std::int64_t budget_bytes) : budget_(budget_bytes) { }

    void set_budget(std::int64_t budget_bytes) { budget_ = budget_bytes; }

    // False (and counted as dropped) when it does not fit.
    bool push(Message message);

    // Sends in order until `send` refuses one; that one and the rest stay.
    void flush(const std::function<bool(const Message&)>& send);

    std::size_t size() const { return messages_.size(); }
    std::int64_t bytes() const { return bytes_; }
    std::uint64_t dropped() const { return dropped_; }

private:
    static std::int64_t size_of(const Message& message);

    std::int64_t budget_;
    std::int64_t bytes_ = 0;
    std::uint64_t dropped_ = 0;
    std::deque<Message> messages_;
};

}  // namespace cim::nats

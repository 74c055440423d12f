#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "nats/auth.hpp"

namespace cim::nats {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Message {
    std::string subject;
    std::string payload;
    Headers headers;
};

// The encoded header block ("NATS/1.0\r\nKey: value\r\n...\r\n"); nats.c
// counts it with the payload against the server's max_payload.
std::int64_t header_bytes(const Headers& headers);

// What became of a publish.
struct Published {
    enum class Outcome {
        sent,  // handed to the server's connection
        no_connection,  // try again once connected
        too_big,  // over the server's max_payload: never goes through as is
        failed,  // refused for another reason that retrying will not cure
    } outcome = Outcome::sent;
    std::string why;  // in words, unless sent

    explicit operator bool() const { return outcome == Outcome::sent; }
};

// The answer to a request (nats::Connection::request).
struct Answer {
    std::uint64_t token = 0;  // the request's
    std::string payload;
    bool no_responders = false;  // nobody subscribes to the request's subject
};

// The server the connection is on.
struct Server {
    std::string url;
    std::int64_t max_payload = 0;
};

// What the connection tells the daemon. All but `health` run on the loop thread.
struct Handlers {
    // Subscriptions confirmed by the server: the first connection and each one after a loss.
    std::function<void(const Server&)> connected;
    std::function<void(const std::string& reason)> disconnected;
    std::function<void(const std::string& error)> error;  // the connection goes on (and retries)
    // The server refused a publish on `subject` (a permissions violation),
    // after publish() had already returned `sent`.
    std::function<void(const std::string& subject, const std::string& why)> refused;
    std::function<void(const Answer&)> answered;  // a request's answer
    std::function<void()> stopped;  // after stop(): drained and closed
    // On the thread that reads the connection's socket: writes the health
    // reply to a request that came at `arrived` into `reply`, kept from one
    // request to the next. Must be thread-safe, and callable until every
    // connection's thread has ended.
    std::function<void(std::string& reply, std::chrono::steady_clock::time_point arrived)> health;
};

// The daemon's NATS connection as the daemon sees it: nats::Link is the
// real one; tests put a double in its place.
class Connection {
public:
    virtual ~Connection() = default;
    virtual Published publish(const Message& message) = 0;
    // Publishes with a reply subject of the connection's own; the answer
    // comes to `answered` with `token`, or never (the caller gives up).
    virtual Published request(const Message& message, std::uint64_t token) = 0;
    // Drains (bounded by `timeout`), closes, then calls `stopped`.
    virtual void stop(std::chrono::milliseconds timeout) = 0;
};

using Connector =
    std::function<std::shared_ptr<Connection>(const config::Config& config, const Auth& auth, Handlers handlers)>;

}  // namespace cim::nats

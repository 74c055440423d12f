#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "event_loop.hpp"
#include "util/fd.hpp"

namespace cim::uplink {

// Where a monitoring URL (http://127.0.0.1:8222, http://localhost,
// http://[::1]:8222/) points: its addresses, in the order to try them.
struct Endpoint {
    struct Address {
        sockaddr_storage storage{};
        socklen_t length = 0;
    };
    std::vector<Address> addresses;
    std::string host;  // for the Host: header
};

// The endpoint of a URL as the schema's monitor_url pattern admits it, or
// why it is not one.
std::variant<Endpoint, std::string> parse_endpoint(const std::string& url);

// One HTTP/1.0 GET driven by the loop, never waiting on the endpoint. The
// local nats-server's monitoring needs no TLS, proxy, redirect or name
// lookup, so a socket does what libcurl did, without its thirty libraries
// loaded at every start; HTTP/1.0 keeps the answer plain (no chunks, the
// body ends with the connection). `done` is called once, never from the
// constructor, and may destroy the HttpGet. Bounding the time is the
// owner's: dropping the HttpGet ends it.
class HttpGet {
public:
    struct Response {
        int status = 0;
        std::string body;
    };
    using Result = std::variant<Response, std::string>;  // or why there is none

    HttpGet(EventLoop& loop, const Endpoint& endpoint, const std::string& path, std::size_t max_body,
        std::function<void(Result)> done);
    HttpGet(const HttpGet&) = delete;
    HttpGet& operator=(const HttpGet&) = delete;

private:
    void connect_next();
    void watch(std::uint32_t events);  // EPOLLOUT: on_writable, EPOLLIN: on_readable
    void on_writable();
    void on_readable();
    void finish(Result result);

    EventLoop& loop_;
    Endpoint endpoint_;
    std::size_t next_address_ = 0;
    std::string why_not_connected_;
    std::size_t max_bytes_;
    std::function<void(Result)> done_;
    util::Fd socket_;
    EventSource watch_;
    std::string request_;
    std::size_t sent_ = 0;
    std::string received_;
};

}  // namespace cim::uplink

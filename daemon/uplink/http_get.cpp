#include "uplink/http_get.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace cim::uplink {

namespace {

Endpoint::Address address(int family, const char* text, std::uint16_t port)
{
    Endpoint::Address out;
    if (family == AF_INET) {
        auto& in = reinterpret_cast<sockaddr_in&>(out.storage);
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        out.length = inet_pton(AF_INET, text, &in.sin_addr) == 1 ? sizeof in : 0;
    } else {
        auto& in6 = reinterpret_cast<sockaddr_in6&>(out.storage);
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons(port);
        out.length = inet_pton(AF_INET6, text, &in6.sin6_addr) == 1 ? sizeof in6 : 0;
    }
    return out;
}

}  // namespace

std::variant<Endpoint, std::string> parse_endpoint(const std::string& url)
{
    std::string_view rest(url);
    if (!rest.starts_with("http://"))
        return "not an http:// URL";
    rest.remove_prefix(7);
    if (rest.ends_with('/'))
        rest.remove_suffix(1);
    const std::size_t colon = rest.starts_with('[') ? rest.find(':', rest.find(']')) : rest.find(':');
    const std::string host(rest.substr(0, colon));
    unsigned port = 80;
    if (colon != std::string_view::npos) {
        const std::string_view digits = rest.substr(colon + 1);
        const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
        if (error != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535)
            return "no port from 1 to 65535 in " + url;
    }
    const auto at = static_cast<std::uint16_t>(port);
    Endpoint endpoint{.addresses = {}, .host = std::string(rest)};
    if (host == "localhost")
        endpoint.addresses = {address(AF_INET, "127.0.0.1", at), address(AF_INET6, "::1", at)};
    else if (host.starts_with('['))
        endpoint.addresses = {address(AF_INET6, host.substr(1, host.size() - 2).c_str(), at)};
    else
        endpoint.addresses = {address(AF_INET, host.c_str(), at)};
    if (endpoint.addresses.front().length == 0)
        return "no loopback address in " + url;
    return endpoint;
}

HttpGet::HttpGet(EventLoop& loop, const Endpoint& endpoint, const std::string& path, std::size_t max_body,
    std::function<void(Result)> done)
    : loop_(loop), endpoint_(endpoint), max_bytes_(max_body + 4096),  // the status line and headers
      done_(std::move(done)),
      request_("GET " + path + " HTTP/1.0\r\nHost: " + endpoint.host + "\r\nAccept: application/json\r\n\r\n")
{
    // A refused connect on the loopback fails at once; `done` waits for the loop.
    watch_ = loop_.after(std::chrono::microseconds(0), [this] { connect_next(); });
}

void HttpGet::connect_next()
{
    if (next_address_ == endpoint_.addresses.size())
        return finish("cannot connect: " + why_not_connected_);
    const Endpoint::Address& to = endpoint_.addresses[next_address_++];
    socket_ = util::Fd(::socket(to.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket_)
        return finish(std::string("cannot open a socket: ") + std::strerror(errno));
    if (::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&to.storage), to.length) != 0 &&
        errno != EINPROGRESS) {
        why_not_connected_ = std::strerror(errno);
        watch_ = loop_.after(std::chrono::microseconds(0), [this] { connect_next(); });
        return;
    }
    watch(EPOLLOUT);
}

void HttpGet::watch(std::uint32_t events)
{
    watch_ = EventSource();  // sd-event takes one source per fd
    watch_ = loop_.on_fd(socket_.get(), events, [this, events](std::uint32_t) {
        if (events == EPOLLOUT)
            on_writable();
        else
            on_readable();
    });
}

void HttpGet::on_writable()
{
    if (sent_ == 0) {  // connected, or not
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) {
            why_not_connected_ = std::strerror(error);
            return connect_next();
        }
    }
    const ssize_t n = ::send(socket_.get(), request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        return finish(std::string("cannot send the request: ") + std::strerror(errno));
    sent_ += n > 0 ? static_cast<std::size_t>(n) : 0;
    if (sent_ == request_.size())
        watch(EPOLLIN);
}

void HttpGet::on_readable()
{
    char buffer[16384];
    const ssize_t n = ::recv(socket_.get(), buffer, sizeof buffer, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            finish(std::string("the answer broke off: ") + std::strerror(errno));
        return;
    }
    if (n > 0) {
        received_.append(buffer, static_cast<std::size_t>(n));
        if (received_.size() > max_bytes_)
            finish("the answer is over " + std::to_string(max_bytes_) + " bytes");
        return;
    }
    // The end: "HTTP/1.x 200 OK\r\n", headers, an empty line, the body.
    if (received_.empty())
        return finish(std::string("closed the connection without an answer"));
    const std::size_t body = received_.find("\r\n\r\n");
    int status = 0;
    const auto [end, error] = std::from_chars(
        received_.data() + std::min<std::size_t>(9, received_.size()), received_.data() + received_.size(), status);
    if (!received_.starts_with("HTTP/1.") || received_.size() < 12 || received_[8] != ' ' || error != std::errc() ||
        end != received_.data() + 12 || body == std::string::npos)
        return finish(std::string("the answer is not HTTP"));
    finish(Response{status, received_.substr(body + 4)});
}

void HttpGet::finish(Result result)
{
    watch_ = EventSource();
    socket_ = util::Fd();
    auto done = std::move(done_);  // `done` may destroy this
    done(std::move(result));
}

}  // namespace cim::uplink

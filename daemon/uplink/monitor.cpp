#include "uplink/monitor.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <stdexcept>

#include <curl/curl.h>

namespace cim::uplink {

namespace {

// /leafz of a server with a few remotes is a few hundred bytes.
constexpr std::size_t max_body = 1 << 20;

}  // namespace

// libcurl's global state only while a Monitor needs it (counted by libcurl,
// and thread-safe since 7.84): a daemon that watches no uplink pays nothing.
struct Monitor::Curl {
    CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM* multi = curl_multi_init();
    CURL* easy = curl_easy_init();

    Curl()
    {
        if (global != CURLE_OK || !multi || !easy)
            throw std::runtime_error("cannot set up libcurl");
    }
    ~Curl()
    {
        curl_multi_remove_handle(multi, easy);
        curl_easy_cleanup(easy);
        curl_multi_cleanup(multi);
        if (global == CURLE_OK)
            curl_global_cleanup();
    }
    Curl(const Curl&) = delete;
    Curl& operator=(const Curl&) = delete;
};

std::chrono::milliseconds Monitor::bound(std::chrono::milliseconds interval)
{
    return std::clamp(interval, std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
}

Monitor::Monitor(EventLoop& loop, const std::string& url, std::chrono::milliseconds interval,
    std::function<void(const Result&)> done)
    : loop_(loop), url_(url), interval_(interval), done_(std::move(done)), curl_(std::make_unique<Curl>())
{
    // What curl waits for becomes sd-event sources of the loop.
    auto on_socket = [](CURL*, curl_socket_t socket, int what, void* self, void*) -> int {
        auto* monitor = static_cast<Monitor*>(self);
        monitor->sockets_.erase(socket);  // before a new source: one per fd
        if (what == CURL_POLL_REMOVE)
            return 0;
        const std::uint32_t events =
            (what & CURL_POLL_IN ? std::uint32_t{EPOLLIN} : 0) | (what & CURL_POLL_OUT ? std::uint32_t{EPOLLOUT} : 0);
        monitor->sockets_.emplace(socket, monitor->loop_.on_fd(socket, events, [monitor, socket](std::uint32_t got) {
            monitor->act(socket,
                (got & EPOLLIN ? CURL_CSELECT_IN : 0) | (got & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (got & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0));
        }));
        return 0;
    };
    auto on_timer = [](CURLM*, long ms, void* self) -> int {
        auto* monitor = static_cast<Monitor*>(self);
        if (ms < 0)
            monitor->curl_timer_ = EventSource();
        else
            monitor->curl_timer_ = monitor->loop_.after(
                std::chrono::milliseconds(ms), [monitor] { monitor->act(CURL_SOCKET_TIMEOUT, 0); });
        return 0;
    };
    auto on_data = [](char* data, std::size_t size, std::size_t count, void* self) -> std::size_t {
        auto& body = static_cast<Monitor*>(self)->body_;
        if (body.size() + size * count > max_body)
            return 0;  // ends the transfer with an error
        body.append(data, size * count);
        return size * count;
    };
    CURLM* multi = curl_->multi;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, +on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, +on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    CURL* easy = curl_->easy;
    const std::string endpoint = url_ + (url_.ends_with("/") ? "" : "/") + "leafz";
    curl_easy_setopt(easy, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");  // loopback: a proxy from the environment has no business here
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(bound(interval_).count()));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +on_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
    poll_timer_ = loop_.every(interval_, [this] { ask(); });
    ask();
}

// The sources first: curl closes its sockets in its cleanup.
Monitor::~Monitor()
{
    sockets_.clear();
    curl_timer_ = EventSource();
    curl_.reset();
}

void Monitor::ask()
{
    if (asking_)
        return;  // the last question is still out (within its bound)
    asking_ = true;
    body_.clear();
    curl_multi_add_handle(curl_->multi, curl_->easy);
}

void Monitor::act(int socket, int events)
{
    int running = 0;
    curl_multi_socket_action(curl_->multi, socket, events, &running);
    finish();
}

void Monitor::finish()
{
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(curl_->multi, &left)) {
        if (message->msg != CURLMSG_DONE)
            continue;
        const CURLcode code = message->data.result;
        long status = 0;
        curl_easy_getinfo(curl_->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(curl_->multi, curl_->easy);
        asking_ = false;
        Result result;
        if (code == CURLE_OPERATION_TIMEDOUT)
            result = "no answer from " + url_ + " within " + std::to_string(bound(interval_).count()) + " ms";
        else if (code != CURLE_OK)  // libcurl's words for the code: the same each time, so logged once
            result = url_ + ": " + curl_easy_strerror(code);
        else if (status != 200)
            result = url_ + "/leafz answered HTTP " + std::to_string(status);
        else if (auto parsed = parse_leafz(body_); std::holds_alternative<std::string>(parsed))
            result = url_ + "/leafz: " + std::get<std::string>(parsed);
        else
            result = std::get<Remotes>(std::move(parsed));
        done_(result);
        return;  // `done` may have changed everything
    }
}

}  // namespace cim::uplink

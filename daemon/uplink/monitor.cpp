#include "uplink/monitor.hpp"

#include <algorithm>

namespace cim::uplink {

namespace {

// /leafz of a server with a few remotes is a few hundred bytes.
constexpr std::size_t max_body = 1 << 20;

}  // namespace

std::chrono::milliseconds Monitor::bound(std::chrono::milliseconds interval)
{
    return std::clamp(interval, std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
}

Monitor::Monitor(EventLoop& loop, const std::string& url, std::chrono::milliseconds interval,
    std::function<void(const Result&)> done)
    : loop_(loop), url_(url), interval_(interval), done_(std::move(done)), endpoint_(parse_endpoint(url))
{
    poll_timer_ = loop_.every(interval_, [this] { ask(); });
    ask();
}

void Monitor::ask()
{
    if (question_)
        return;  // the last question is still out (within its bound)
    if (const auto* why = std::get_if<std::string>(&endpoint_)) {
        deadline_ = loop_.after(std::chrono::microseconds(0), [this, why] { done_(url_ + ": " + *why); });
        return;
    }
    deadline_ = loop_.after(bound(interval_), [this] {
        question_.reset();
        done_("no answer from " + url_ + " within " + std::to_string(bound(interval_).count()) + " ms");
    });
    question_ = std::make_unique<HttpGet>(loop_, std::get<Endpoint>(endpoint_), "/leafz", max_body,
        [this](HttpGet::Result answer) { answered(std::move(answer)); });
}

// Each `done` is the last thing done: it may have changed everything.
void Monitor::answered(HttpGet::Result answer)
{
    question_.reset();
    deadline_ = EventSource();
    if (const auto* why = std::get_if<std::string>(&answer))
        return done_(url_ + ": " + *why);
    const auto& response = std::get<HttpGet::Response>(answer);
    if (response.status != 200)
        return done_(url_ + "/leafz answered HTTP " + std::to_string(response.status));
    auto parsed = parse_leafz(response.body);
    if (const auto* why = std::get_if<std::string>(&parsed))
        return done_(url_ + "/leafz: " + *why);
    done_(std::get<Remotes>(std::move(parsed)));
}

}  // namespace cim::uplink

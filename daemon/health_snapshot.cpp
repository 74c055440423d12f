#include "health_snapshot.hpp"

#include <algorithm>
#include <stdexcept>
#include <string_view>

#include "health.hpp"
#include "util/ids.hpp"
#include "util/json.hpp"

namespace cim {

namespace {

bool same_but_heartbeats(const LiveState& a, LiveState b)
{
    b.heartbeats_sent = a.heartbeats_sent;
    b.last_heartbeat = a.last_heartbeat;
    return a == b;
}

}  // namespace

void HealthSnapshot::update(const LiveState& live)
{
    Heartbeats heartbeats{live.heartbeats_sent, util::rfc3339_or_empty(live.last_heartbeat)};
    const bool changed = !same_but_heartbeats(live_, live);  // read without the lock: only this thread writes
    std::lock_guard lock(mutex_);
    heartbeats_ = std::move(heartbeats);
    if (changed) {
        live_ = live;
        rendered_.reset();
    }
}

HealthSnapshot::Rendered HealthSnapshot::render(const LiveState& live)
{
    Rendered rendered;
    rendered.text = util::dump(health_json(live, live.started_at, live.started_steady));
    // The value of `"key":` in compact JSON: a string without escapes or an
    // integer. Inside a JSON string every '"' is escaped, so `"key":` with
    // its quotes is the key itself, whatever the strings around it hold.
    const std::string& text = rendered.text;
    auto stamp = [&text](std::string_view key, Stamp::Value value) {
        const std::string token = "\"" + std::string(key) + "\":";
        const std::size_t at = text.find(token);
        if (at == std::string::npos)
            throw std::logic_error("the health reply has no " + token);
        const std::size_t begin = at + token.size();
        const std::size_t end =
            text[begin] == '"' ? text.find('"', begin + 1) + 1 : text.find_first_not_of("-0123456789", begin);
        return Stamp{value, begin, end - begin};
    };
    using enum Stamp::Value;
    rendered.stamps = {stamp("time", time), stamp("uptime_s", uptime), stamp("oldest_pending_s", oldest_pending),
        stamp("heartbeats_sent", heartbeats_sent), stamp("last_heartbeat", last_heartbeat)};
    std::sort(
        rendered.stamps.begin(), rendered.stamps.end(), [](const Stamp& a, const Stamp& b) { return a.at < b.at; });
    return rendered;
}

std::string HealthSnapshot::json(
    std::chrono::system_clock::time_point now, std::chrono::steady_clock::time_point now_steady) const
{
    std::string out;
    write(out, now, now_steady);
    return out;
}

void HealthSnapshot::write(
    std::string& out, std::chrono::system_clock::time_point now, std::chrono::steady_clock::time_point now_steady) const
{
    using enum Stamp::Value;
    // Held throughout: only a change of state on the loop waits for it.
    std::lock_guard lock(mutex_);
    if (!rendered_)
        rendered_ = render(live_);
    const Rendered& rendered = *rendered_;
    const std::string& text = rendered.text;
    out.clear();
    out.reserve(text.size() + 64);
    std::size_t from = 0;
    for (const Stamp& stamp : rendered.stamps) {
        out.append(text, from, stamp.at - from);
        switch (stamp.value) {
        case time:
            out += '"';
            util::append_rfc3339(out, now);
            out += '"';
            break;
        case uptime:
            out += std::to_string(uptime_seconds(live_, now_steady));
            break;
        case oldest_pending:
            out += std::to_string(oldest_pending_seconds(live_.events, now));
            break;
        case heartbeats_sent:
            out += std::to_string(heartbeats_.sent);
            break;
        case last_heartbeat:
            out.append(1, '"').append(heartbeats_.last).append(1, '"');
            break;
        }
        from = stamp.at + stamp.length;
    }
    out.append(text, from);
}

}  // namespace cim

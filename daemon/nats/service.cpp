#include "nats/service.hpp"

#include <cstdint>

#include "util/ids.hpp"
#include "util/json.hpp"
#include "util/text.hpp"
#include "version.hpp"

namespace cim::nats {

Service::Service(std::string id, std::vector<Endpoint> endpoints)
    : id_(std::move(id)), endpoints_(std::move(endpoints)), started_(std::chrono::system_clock::now()),
      stats_(endpoints_.size())
{
}

std::vector<std::string> Service::subjects() const
{
    const std::string base = "$SRV.*";
    return {base, base + "." + name, base + "." + name + "." + id_};
}

Message Service::answer(const std::string& subject)
{
    // $SRV.<VERB>[.<name>[.<id>]]: the wildcard subscriptions match the verb.
    const std::size_t start = 5;  // after "$SRV."
    const std::size_t end = subject.find('.', start);
    const std::string verb = subject.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (verb == "PING")
        return {{}, util::dump(ping()), {}};
    if (verb == "INFO")
        return {{}, util::dump(info()), {}};
    if (verb == "STATS")
        return {{}, util::dump(stats()), {}};
    return {{}, {},
        {{"Nats-Service-Error", "unknown verb " + util::quote(verb) + ": " + name + " answers PING, INFO and STATS"},
            {"Nats-Service-Error-Code", "400"}}};
}

void Service::record(std::size_t index, std::chrono::nanoseconds processing, const std::string& error)
{
    Stats& stats = stats_.at(index);
    stats.requests.fetch_add(1, std::memory_order_relaxed);
    stats.processing_ns.fetch_add(processing.count(), std::memory_order_relaxed);
    if (!error.empty()) {
        stats.errors.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(mutex_);
        stats.last_error = error;
    }
}

nlohmann::json Service::identity(const char* type) const
{
    return {{"type", type}, {"name", name}, {"id", id_}, {"version", version_string},
        {"metadata", nlohmann::json::object()}};
}

nlohmann::json Service::ping() const
{
    return identity("io.nats.micro.v1.ping_response");
}

nlohmann::json Service::info() const
{
    nlohmann::json out = identity("io.nats.micro.v1.info_response");
    out["description"] = "CIM leaf node agent: heartbeats, lifecycle events and health of this node";
    out["endpoints"] = nlohmann::json::array();
    for (const Endpoint& endpoint : endpoints_)
        // No queue group: every leaf must answer the fan-out health request.
        out["endpoints"].push_back({{"name", endpoint.name}, {"subject", endpoint.subject}, {"queue_group", ""},
            {"metadata", nlohmann::json::object()}});
    return out;
}

nlohmann::json Service::stats()
{
    nlohmann::json out = identity("io.nats.micro.v1.stats_response");
    out["started"] = util::rfc3339(started_);
    out["endpoints"] = nlohmann::json::array();
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < endpoints_.size(); ++i) {
        const Stats& stats = stats_[i];
        const std::uint64_t requests = stats.requests.load(std::memory_order_relaxed);
        const std::int64_t total = stats.processing_ns.load(std::memory_order_relaxed);
        out["endpoints"].push_back({
            {"name", endpoints_[i].name},
            {"subject", endpoints_[i].subject},
            {"queue_group", ""},
            {"num_requests", requests},
            {"num_errors", stats.errors.load(std::memory_order_relaxed)},
            {"last_error", stats.last_error},
            {"processing_time", total},
            {"average_processing_time", requests ? total / static_cast<std::int64_t>(requests) : 0},
        });
    }
    return out;
}

}  // namespace cim::nats

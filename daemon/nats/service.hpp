#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nats/connection.hpp"

namespace cim::nats {

// The NATS service protocol (ADR-32) by hand: nats.c 3.4.1 has no micro API.
// Answers PING, INFO and STATS for the service `cim-leaf` whose instance id
// is the node id, and keeps the per-endpoint statistics STATS reports.
// Thread-safe: health requests are recorded on the socket's thread, the
// service's own requests answered on nats.c's delivery thread.
class Service {
public:
    static constexpr const char* name = "cim-leaf";

    struct Endpoint {
        std::string name;
        std::string subject;
    };

    Service(std::string id, std::vector<Endpoint> endpoints);

    const std::vector<Endpoint>& endpoints() const { return endpoints_; }

    // The subjects to subscribe to: $SRV.*, $SRV.*.cim-leaf, $SRV.*.cim-leaf.<id>.
    std::vector<std::string> subjects() const;

    // The reply (without its subject) to a request on `subject`: a verb
    // ADR-32 does not define gets a service error (Nats-Service-Error
    // headers), as a micro client expects, instead of silence.
    Message answer(const std::string& subject);

    // Records one handled request of endpoint `index`.
    void record(std::size_t index, std::chrono::nanoseconds processing, const std::string& error = {});

    nlohmann::json ping() const;
    nlohmann::json info() const;
    nlohmann::json stats();

private:
    // Counted without a lock: every request records itself on the thread
    // that answers it. Only an error's text takes the mutex.
    struct Stats {
        std::atomic<std::uint64_t> requests = 0;
        std::atomic<std::uint64_t> errors = 0;
        std::atomic<std::int64_t> processing_ns = 0;
        std::string last_error;  // under mutex_
    };

    nlohmann::json identity(const char* type) const;

    std::string id_;
    std::vector<Endpoint> endpoints_;
    std::chrono::system_clock::time_point started_;
    std::mutex mutex_;
    std::vector<Stats> stats_;  // one per endpoint, never resized
};

}  // namespace cim::nats

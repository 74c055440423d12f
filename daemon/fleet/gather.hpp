#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "nats/auth.hpp"

namespace cim::fleet {

struct Gathered {
    std::vector<std::string> answers;
    bool no_responders = false;  // the server says nobody subscribes to the subject
    std::optional<std::string> failure;  // NATS could not be reached or used: why, in words
};

// Connects (with the daemon's connection options), publishes an empty
// request on `subject` and collects the answers until `timeout` has passed,
// or earlier once `enough` says so after an answer. Blocking: a command
// line tool has no loop to keep going.
Gathered gather(const config::NatsConfig& nats, const nats::Auth& auth, const std::string& subject,
    std::chrono::milliseconds timeout, const std::function<bool(const std::string& answer)>& enough);

}  // namespace cim::fleet

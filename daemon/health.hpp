#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "live_state.hpp"

namespace cim {

// "ok", "degraded" or "failing": the worst of the checks.
std::string health_status(const LiveState& live);

// The io.cim.leaf.v1.health payload.
nlohmann::json health_json(
    const LiveState& live, std::chrono::system_clock::time_point now, std::chrono::steady_clock::time_point now_steady);

// What systemctl status shows on its Status: line.
std::string status_text(const LiveState& live);

}  // namespace cim

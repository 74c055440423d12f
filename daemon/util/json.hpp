#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cim::util {

// Serialises for the wire (NATS, D-Bus); invalid UTF-8 from outside (labels,
// a server's words) is replaced rather than allowed to throw.
std::string dump(const nlohmann::json& json);

}  // namespace cim::util

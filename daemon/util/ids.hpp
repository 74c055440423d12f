#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cim::util {

// RFC 3339 in UTC with milliseconds: 2026-11-23T22:45:05.123Z
std::string rfc3339(std::chrono::system_clock::time_point time);
// The same, appended to `out` (no allocation when it has the room).
void append_rfc3339(std::string& out, std::chrono::system_clock::time_point time);
// The same, or "" for the epoch: a time that has not come yet.
std::string rfc3339_or_empty(std::chrono::system_clock::time_point time);
// The time rfc3339() wrote, or nullopt for any other text.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

// A UUIDv7 (RFC 9562): time-ordered, so event ids sort by creation.
std::string uuid_v7();

}  // namespace cim::util

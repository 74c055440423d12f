#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cim::config {

using Duration = std::chrono::milliseconds;

// "500ms", "5s", "2m", "1h", "30d": one unsigned number and one unit, as operators
// write them in YAML and Nix. Returns nullopt for anything else. A number
// too large to count in milliseconds reads as Duration::max(), so that a
// range check calls it too long rather than no duration at all.
std::optional<Duration> parse_duration(std::string_view text);

// The shortest exact spelling of `d` in the same grammar ("1500ms", "5s").
std::string format_duration(Duration d);

// The grammar as a regular expression (ECMAScript and POSIX ERE alike), for
// the JSON Schema and the NixOS options: made from the same units.
std::string duration_pattern();

}  // namespace cim::config

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cim::util {

// `text` in double quotes with JSON escapes, cut after 64 characters, for
// error messages that echo what the user wrote.
std::string quote(std::string_view text);

std::size_t edit_distance(std::string_view a, std::string_view b);

// A whole decimal integer (optional '-'), nothing else.
std::optional<std::int64_t> parse_int(std::string_view text);

// Why `text` is not UTF-8 text a YAML file may hold ("a NUL byte at offset
// 12"), or nullopt.
std::optional<std::string> find_non_text(std::string_view text);

}  // namespace cim::util

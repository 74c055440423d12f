#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cim::util {

// `text` in double quotes with JSON escapes, cut after at most 64 bytes at a
// character boundary, for error messages that echo what the user wrote.
std::string quote(std::string_view text);

// A name from a file (a key, a path) as written when it holds nothing but
// ASCII letters, digits and the characters in `also`, else quote(name): so
// that it can neither send control characters to a terminal nor pass for
// part of the message around it.
std::string quote_unless_plain(std::string_view name, std::string_view also);

std::size_t edit_distance(std::string_view a, std::string_view b);

// A node id: one NATS subject token of letters, digits, '_' and '-'.
bool is_node_id(std::string_view text);

// `items` with `separator` between them.
std::string join(const std::vector<std::string>& items, std::string_view separator);

// The parts of `text` between the separators: "a,,b" is "a", "", "b".
std::vector<std::string> split(std::string_view text, char separator);

// `seconds` in days, hours, minutes and seconds from the largest unit that is
// not zero, at most `units` of them: "3d 4h 0m 5s", or "3d 4h" with 2.
std::string duration_words(std::int64_t seconds, std::size_t units = 4);

// `n` and the noun, plural unless n is 1: "1 event", "3 events".
inline std::string count_words(std::uint64_t n, std::string_view noun)
{
    return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

// A whole decimal integer (optional '-'), nothing else.
std::optional<std::int64_t> parse_int(std::string_view text);

// The length of the well-formed UTF-8 sequence `text` starts with (Unicode
// Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF), or 0
// when it starts with an ill-formed one (or is empty).
std::size_t utf8_sequence_length(std::string_view text);

// Why `text` is not UTF-8 text a YAML file may hold ("a NUL byte at offset
// 12"), or nullopt.
std::optional<std::string> find_non_text(std::string_view text);

// `text` with each byte of an ill-formed UTF-8 sequence replaced by U+FFFD,
// for text from outside (servers, paths) bound for APIs that demand UTF-8.
std::string to_valid_utf8(std::string_view text);

}  // namespace cim::util

namespace cim::util {

// The longest prefix of valid UTF-8 `text` of at most `max_bytes` that ends
// at a character boundary.
std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes);

}  // namespace cim::util

#include "config/duration.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <utility>

namespace cim::config {

namespace {

struct Unit {
    std::string_view suffix;
    std::int64_t ms;
};

// Longest suffix first so "ms" is not read as "m" + garbage.
constexpr std::array units{
    Unit{"ms", 1}, Unit{"s", 1000}, Unit{"m", 60'000}, Unit{"h", 3'600'000}, Unit{"d", 86'400'000}};

}  // namespace

std::optional<Duration> parse_duration(std::string_view text)
{
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        ++digits;
    if (digits == 0)
        return std::nullopt;

    std::uint64_t number = 0;
    // Only digits are given, so the one possible error is a number too large.
    const bool huge = std::from_chars(text.data(), text.data() + digits, number).ec != std::errc{};
    const std::string_view suffix = text.substr(digits);
    for (const Unit& unit : units) {
        if (suffix != unit.suffix)
            continue;
        if (huge || number > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / unit.ms))
            return Duration::max();
        return Duration{static_cast<std::int64_t>(number) * unit.ms};
    }
    return std::nullopt;
}

std::string format_duration(Duration d)
{
    const std::int64_t ms = d.count();
    for (auto it = units.rbegin(); it != units.rend(); ++it)
        if (ms != 0 && ms % it->ms == 0)
            return std::to_string(ms / it->ms) + std::string(it->suffix);
    return std::to_string(ms) + "ms";
}

std::string duration_pattern()
{
    std::string suffixes;
    for (const Unit& unit : units)
        suffixes += (suffixes.empty() ? "" : "|") + std::string(unit.suffix);
    return "^[0-9]+(" + suffixes + ")$";
}

}  // namespace cim::config

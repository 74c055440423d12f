#include "util/text.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <utility>
#include <vector>

namespace cim::util {

namespace {

// One character of valid UTF-8, with JSON escapes for what a terminal or
// log line should not see raw.
void append_escaped(std::string& out, std::string_view character)
{
    const unsigned char c = static_cast<unsigned char>(character.front());
    if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
        out += escaped;
    } else {
        out += character;
    }
}

}  // namespace

std::string quote(std::string_view text)
{
    constexpr std::size_t limit = 64;
    const std::string valid = to_valid_utf8(text);
    const std::string_view rest = valid;
    std::string out = "\"";
    std::size_t i = 0;
    while (i < rest.size()) {
        const std::size_t length = utf8_sequence_length(rest.substr(i));
        if (i + length > limit)
            break;  // never half a character
        append_escaped(out, rest.substr(i, length));
        i += length;
    }
    if (i < rest.size())
        out += "...";
    return out + "\"";
}

std::string quote_unless_plain(std::string_view name, std::string_view also)
{
    const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            also.find(c) != std::string_view::npos;
    });
    return plain ? std::string(name) : quote(name);
}

std::size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<std::size_t> row(b.size() + 1);
    std::iota(row.begin(), row.end(), 0);
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

bool is_node_id(std::string_view text)
{
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

std::string join(const std::vector<std::string>& items, std::string_view separator)
{
    std::string out;
    for (const auto& item : items)
        out += (out.empty() ? "" : std::string(separator)) + item;
    return out;
}

std::vector<std::string> split(std::string_view text, char separator)
{
    std::vector<std::string> out;
    for (std::size_t start = 0;;) {
        const std::size_t end = text.find(separator, start);
        out.emplace_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos)
            return out;
        start = end + 1;
    }
}

std::string duration_words(std::int64_t seconds, std::size_t units)
{
    seconds = std::max<std::int64_t>(seconds, 0);
    const std::array<std::pair<std::int64_t, char>, 4> parts{
        {{seconds / 86400, 'd'}, {seconds / 3600 % 24, 'h'}, {seconds / 60 % 60, 'm'}, {seconds % 60, 's'}}};
    std::size_t first = 0;
    while (first + 1 < parts.size() && parts[first].first == 0)
        ++first;
    std::string out;
    for (std::size_t i = first; i < parts.size() && i < first + units; ++i)
        out += (out.empty() ? "" : " ") + std::to_string(parts[i].first) + parts[i].second;
    return out;
}

std::optional<std::int64_t> parse_int(std::string_view text)
{
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

std::size_t utf8_sequence_length(std::string_view text)
{
    if (text.empty())
        return 0;
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte(0);
    if (lead < 0x80)
        return 1;
    // Table 3-7: the lead byte fixes the length and the range of the second
    // byte; every later byte is 80..BF.
    std::size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf)
        length = 2;
    else if (lead >= 0xe0 && lead <= 0xef)
        length = 3;
    else if (lead >= 0xf0 && lead <= 0xf4)
        length = 4;
    else
        return 0;  // a continuation byte, an overlong C0/C1 or above U+10FFFF
    if (lead == 0xe0)
        low = 0xa0;  // overlong below U+0800
    else if (lead == 0xed)
        high = 0x9f;  // surrogates D800..DFFF
    else if (lead == 0xf0)
        low = 0x90;  // overlong below U+10000
    else if (lead == 0xf4)
        high = 0x8f;  // above U+10FFFF
    if (text.size() < length || byte(1) < low || byte(1) > high)
        return 0;
    for (std::size_t i = 2; i < length; ++i)
        if (byte(i) < 0x80 || byte(i) > 0xbf)
            return 0;
    return length;
}

std::optional<std::string> find_non_text(std::string_view text)
{
    std::size_t i = 0;
    while (i < text.size()) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == 0)
            return "a NUL byte at offset " + std::to_string(i);
        // YAML allows no control characters but tab and line breaks; they
        // also send yaml-cpp 0.7 into endless loops (found by fuzzing).
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
            return "a control character (byte " + std::to_string(c) + ") at offset " + std::to_string(i);
        const std::size_t length = utf8_sequence_length(text.substr(i));
        if (length == 0)
            return "invalid UTF-8 at offset " + std::to_string(i);
        i += length;
    }
    return std::nullopt;
}

std::string to_valid_utf8(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const std::size_t length = utf8_sequence_length(text.substr(i));
        if (length == 0) {
            out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
            ++i;
        } else {
            out.append(text, i, length);
            i += length;
        }
    }
    return out;
}

}  // namespace cim::util

namespace cim::util {

std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes)
{
    std::size_t end = 0;
    while (end < text.size()) {
        const std::size_t length = std::max<std::size_t>(utf8_sequence_length(text.substr(end)), 1);
        if (end + length > max_bytes)
            break;
        end += length;
    }
    return text.substr(0, end);
}

}  // namespace cim::util

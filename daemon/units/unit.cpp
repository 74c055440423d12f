#include "units/unit.hpp"

#include <fnmatch.h>
#include <signal.h>

#include <algorithm>

namespace cim::units {

bool failing(const Unit& unit)
{
    return unit.active_state == "failed" || unit.sub_state.starts_with("auto-restart");
}

bool in_trouble(const Unit& unit)
{
    return failing(unit) || unit.load_state == "not-found" || unit.load_state == "bad-setting" ||
        unit.load_state == "error";
}

std::vector<std::string> in_trouble(const std::vector<Unit>& units)
{
    std::vector<std::string> names;
    for (const Unit& unit : units)
        if (in_trouble(unit))
            names.push_back(unit.name);
    return names;
}

bool matches(const std::vector<std::string>& patterns, const std::string& name)
{
    return std::any_of(patterns.begin(), patterns.end(),
        [&](const std::string& pattern) { return fnmatch(pattern.c_str(), name.c_str(), 0) == 0; });
}

std::string object_path(const std::string& name)
{
    static constexpr char hex[] = "0123456789abcdef";
    std::string path = "/org/freedesktop/systemd1/unit/";
    for (const unsigned char c : name) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            path += static_cast<char>(c);
        } else {
            path += '_';
            path += hex[c >> 4];
            path += hex[c & 0xf];
        }
    }
    return path;
}

std::string exit_code_words(std::int32_t code)
{
    switch (code) {
    case CLD_EXITED:
        return "exited";
    case CLD_KILLED:
        return "killed";
    case CLD_DUMPED:
        return "dumped";
    default:
        return {};
    }
}

}  // namespace cim::units

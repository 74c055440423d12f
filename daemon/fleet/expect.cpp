#include "fleet/expect.hpp"

#include <algorithm>

#include "util/text.hpp"

namespace cim::fleet {

std::variant<Expectation, std::string> parse_expectation(std::string_view text)
{
    if (const auto count = util::parse_int(text)) {
        if (*count < 1)
            return "--expect needs a count of at least 1, or node ids separated by commas; got " + util::quote(text);
        return Expectation{static_cast<std::size_t>(*count), {}};
    }
    auto names = util::split(text, ',');
    if (names.size() > 1 && names.back().empty())
        names.pop_back();  // "7,": the trailing comma that makes a node id of a number
    Expectation expected;
    for (const auto& name : names) {
        if (!util::is_node_id(name))
            return "--expect: " + util::quote(name) +
                " is not a node id (letters, digits, '_' and '-'); give a count or node ids separated by commas";
        if (!expected.names.insert(name).second)
            return "--expect: node " + name + " is given twice";
    }
    expected.count = expected.names.size();
    return expected;
}

bool met(const Expectation& expected, const std::set<std::string>& answered)
{
    if (expected.names.empty())
        return answered.size() >= expected.count;
    return std::includes(answered.begin(), answered.end(), expected.names.begin(), expected.names.end());
}

}  // namespace cim::fleet

#include "fleet/expect.hpp"

#include <algorithm>
#include <regex>

#include "util/text.hpp"

namespace cim::fleet {

std::variant<Expectation, std::string> parse_expectation(std::string_view text)
{
    if (const auto count = util::parse_int(text)) {
        if (*count < 1)
            return "--expect needs a count of at least 1, or node ids separated by commas; got " + util::quote(text);
        return Expectation{static_cast<std::size_t>(*count), {}};
    }
    static const std::regex node_id(R"(^[A-Za-z0-9_-]+$)");
    Expectation expected;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        const std::string name(text.substr(start, end - start));
        start = end + 1;
        if (name.empty() && end == text.size() && !expected.names.empty())
            break;  // "7,": the trailing comma of a single node id
        if (name.empty() || !std::regex_match(name, node_id))
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

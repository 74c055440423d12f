#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <variant>

namespace cim::fleet {

// What `cim-leaf fleet --expect` asks for: at least `count` leaves, or these
// leaves by node id.
struct Expectation {
    std::size_t count = 0;  // how many distinct nodes must answer
    std::set<std::string> names;  // when given: exactly these must be among them
    bool operator==(const Expectation&) const = default;
};

// "3" (a count) or "leaf-a,leaf-b" (node ids); else why not, in words.
// A number is always a count: a node named "7" is expected as "7,".
std::variant<Expectation, std::string> parse_expectation(std::string_view text);

// Whether the nodes that answered meet it.
bool met(const Expectation& expected, const std::set<std::string>& answered);

}  // namespace cim::fleet

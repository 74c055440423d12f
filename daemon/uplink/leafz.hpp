#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cim::uplink {

// A leaf node connection of the local nats-server, as its /leafz lists it.
struct Remote {
    std::string url;  // nats-leaf://<ip>:<port> of the server at the other end (the hub)
    std::string rtt;  // as the server words it: "1.234ms"
    bool operator==(const Remote&) const = default;
};

// The local server's leaf node connections: none means the uplink is down.
using Remotes = std::vector<Remote>;

// What nats-server's monitoring answers on /leafz, or why it is not that.
std::variant<Remotes, std::string> parse_leafz(std::string_view body);

}  // namespace cim::uplink

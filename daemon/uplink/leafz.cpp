#include "uplink/leafz.hpp"

#include <cstdint>

#include <nlohmann/json.hpp>

namespace cim::uplink {

std::variant<Remotes, std::string> parse_leafz(std::string_view body)
{
    const auto json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_discarded() || !json.is_object())
        return std::string("the answer is not JSON");
    const auto leafs = json.find("leafs");
    if (!json.contains("leafnodes") || leafs == json.end())
        return std::string("the answer has no leafnodes and leafs: not a nats-server /leafz");
    Remotes remotes;
    if (leafs->is_null())
        return remotes;  // nats-server 2.9 says null, not [], when there are none
    if (!leafs->is_array())
        return std::string("leafs is not a list");
    for (const auto& leaf : *leafs) {
        if (!leaf.is_object())
            return std::string("an entry of leafs is not an object");
        const auto ip = leaf.value("ip", std::string());
        const auto port = leaf.value("port", std::int64_t{0});
        const bool v6 = ip.find(':') != std::string::npos;
        remotes.push_back({"nats-leaf://" + (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port),
            leaf.value("rtt", std::string())});
    }
    return remotes;
}

}  // namespace cim::uplink

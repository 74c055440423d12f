#include <doctest/doctest.h>

#include <netinet/in.h>

#include "config/load.hpp"
#include "uplink/http_get.hpp"
#include "uplink/leafz.hpp"
#include "uplink/monitor.hpp"

using namespace cim;

TEST_CASE("/leafz: each leaf node connection is a remote; none is an uplink that is down")
{
    const auto up = uplink::parse_leafz(R"({"server_id":"N","now":"x","leafnodes":2,"leafs":[
        {"account":"$G","ip":"10.0.0.1","port":7422,"rtt":"1.2ms","in_msgs":0},
        {"account":"$G","ip":"2001:db8::1","port":7422,"rtt":"3ms"}]})");
    REQUIRE(std::holds_alternative<uplink::Remotes>(up));
    CHECK(std::get<uplink::Remotes>(up) ==
        uplink::Remotes{{"nats-leaf://10.0.0.1:7422", "1.2ms"}, {"nats-leaf://[2001:db8::1]:7422", "3ms"}});
    // nats-server 2.9 says null, not [], when there is none.
    const auto down = uplink::parse_leafz(R"({"server_id":"N","leafnodes":0,"leafs":null})");
    REQUIRE(std::holds_alternative<uplink::Remotes>(down));
    CHECK(std::get<uplink::Remotes>(down).empty());
}

TEST_CASE("/leafz: what is not its answer is said so")
{
    auto why = [](std::string_view body) { return std::get<std::string>(uplink::parse_leafz(body)); };
    CHECK(why("<html>502 Bad Gateway</html>") == "the answer is not JSON");
    CHECK(why(R"({"server_id":"N","connz":[]})") == "the answer has no leafnodes and leafs: not a nats-server /leafz");
    CHECK(why(R"({"leafnodes":1,"leafs":{"a":1}})") == "leafs is not a list");
    CHECK(why(R"({"leafnodes":1,"leafs":[7]})") == "an entry of leafs is not an object");
}

TEST_CASE("an answer may take the poll interval, 2 s at most, 100 ms at least")
{
    using std::chrono::milliseconds;
    CHECK(uplink::Monitor::bound(milliseconds(5000)) == milliseconds(2000));
    CHECK(uplink::Monitor::bound(milliseconds(500)) == milliseconds(500));
    CHECK(uplink::Monitor::bound(milliseconds(10)) == milliseconds(100));
}

TEST_CASE("uplink.monitor_url is on the loopback only")
{
    auto loads = [](const std::string& url) {
        return config::load_string("uplink: {monitor_url: '" + url + "'}\n", "config.yaml").config.has_value();
    };
    for (const char* url : {"http://127.0.0.1:8222", "http://127.1.2.3:8222/", "http://localhost:8222",
             "http://[::1]:8222", "http://127.0.0.1"})
        CHECK_MESSAGE(loads(url), url);
    for (const char* url : {"http://10.0.0.1:8222", "https://127.0.0.1:8222", "http://localhost.evil:8222",
             "http://127.0.0.1:8222/leafz", "http://127.0.0.1:0", "http://user@127.0.0.1:8222", "http://[::2]:8222"})
        CHECK_FALSE_MESSAGE(loads(url), url);
}

TEST_CASE("a monitoring URL names loopback addresses: localhost both, IPv4 first")
{
    using uplink::parse_endpoint;
    auto families = [](const std::string& url) {
        const auto endpoint = parse_endpoint(url);
        REQUIRE(std::holds_alternative<uplink::Endpoint>(endpoint));
        std::vector<int> out;
        for (const auto& address : std::get<uplink::Endpoint>(endpoint).addresses)
            out.push_back(address.storage.ss_family);
        return out;
    };
    CHECK(families("http://localhost:8222") == std::vector<int>{AF_INET, AF_INET6});
    CHECK(families("http://127.0.0.1/") == std::vector<int>{AF_INET});
    CHECK(families("http://[::1]:8222/") == std::vector<int>{AF_INET6});
    CHECK(std::get<uplink::Endpoint>(parse_endpoint("http://[::1]:8222/")).host == "[::1]:8222");
    const auto port = std::get<uplink::Endpoint>(parse_endpoint("http://127.0.0.2:8222")).addresses[0];
    CHECK(ntohs(reinterpret_cast<const sockaddr_in&>(port.storage).sin_port) == 8222);
    CHECK(std::get<std::string>(parse_endpoint("http://127.999.0.1:8222")) ==
        "no loopback address in http://127.999.0.1:8222");
    CHECK(std::get<std::string>(parse_endpoint("http://127.0.0.1:99999")) ==
        "no port from 1 to 65535 in http://127.0.0.1:99999");
}

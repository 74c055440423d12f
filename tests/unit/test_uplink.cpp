#include <doctest/doctest.h>

#include "config/load.hpp"
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

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "config/load.hpp"

using namespace cim::config;

namespace {

Config good(const std::string& yaml)
{
    auto result = load_string(yaml, "config.yaml");
    for (const auto& error : result.errors)
        FAIL_CHECK(error.str());
    REQUIRE(result.config);
    return *result.config;
}

// The one error a bad file produces, as printed.
std::string error(const std::string& yaml)
{
    auto result = load_string(yaml, "config.yaml");
    REQUIRE_FALSE(result.config);
    REQUIRE(result.errors.size() >= 1);
    return result.errors.front().str();
}

}  // namespace

TEST_CASE("an empty file means every default")
{
    const Config config = good("");
    CHECK(config.nats.servers == std::vector<std::string>{"nats://127.0.0.1:4222"});
    CHECK(config.nats.name == "cim-leaf");
    CHECK(config.nats.reconnect.wait == Duration{2000});
    CHECK(config.nats.reconnect.jitter == Duration{500});
    CHECK(config.events.delivery == Delivery::automatic);
    CHECK(config.events.stream.name == "CIM_LEAF_EVENTS");
    CHECK(config.events.stream.all_nodes);
    CHECK(config.events.stream.create);
    CHECK(config.events.stream.max_age == Duration{30LL * 86'400'000});
    CHECK(config.events.stream.duplicate_window == Duration{2 * 3'600'000});
    CHECK(config.events.stream.domain.empty());
    CHECK(config.events.spool_bytes == 8388608);
    CHECK(config.subjects.prefix == "cim.leaf");
    CHECK(config.heartbeat.interval == Duration{5000});
    CHECK(config.dbus.bus == Bus::system);
    CHECK(config.systemd.ready_on == ReadyOn::connected);
    CHECK(config.log.level == "info");
    CHECK(config.node.domain.empty());
    CHECK(config.node.labels.empty());
    CHECK(config.nats.credentials_file.empty());
    CHECK_FALSE(config.node.id.empty());  // the host name
}

TEST_CASE("every key of the design's example config is read")
{
    const Config config = good(R"(
node:
  id: leaf-01
  domain: example
  labels: {rack: r1, room: "2"}
nats:
  servers: [tls://10.0.0.1:4222, tls://hub.example:4443]
  name: edge
  credentials_file: nats.creds
  tls: {ca_file: /etc/ssl/ca.pem, cert_file: client.pem, key_file: client.key}
  reconnect: {wait: 3s, jitter: 250ms}
subjects:
  prefix: cim.site1.leaf
heartbeat:
  interval: 1m
dbus:
  bus: session
systemd:
  ready_on: started
events:
  delivery: jetstream
  stream: {name: FACTORY, subjects: this-node, create: false, max_age: 7d, max_bytes: 1048576,
           duplicate_window: 1h, domain: leaf-01}
  spool_bytes: 65536
log:
  level: debug
)");
    CHECK(config.node.id == "leaf-01");
    CHECK(config.node.domain == "example");
    CHECK(config.node.labels == std::map<std::string, std::string>{{"rack", "r1"}, {"room", "2"}});
    CHECK(config.nats.servers.size() == 2);
    CHECK(config.nats.name == "edge");
    CHECK(config.nats.credentials_file == "nats.creds");
    CHECK(config.nats.tls.ca_file == "/etc/ssl/ca.pem");
    CHECK(config.nats.tls.key_file == "client.key");
    CHECK(config.nats.reconnect.wait == Duration{3000});
    CHECK(config.events.delivery == Delivery::jetstream);
    CHECK(config.events.stream.name == "FACTORY");
    CHECK_FALSE(config.events.stream.all_nodes);
    CHECK_FALSE(config.events.stream.create);
    CHECK(config.events.stream.max_age == Duration{7 * 86'400'000});
    CHECK(config.events.stream.max_bytes == 1048576);
    CHECK(config.events.stream.domain == "leaf-01");
    CHECK(config.events.spool_bytes == 65536);
    CHECK(config.subjects.prefix == "cim.site1.leaf");
    CHECK(config.heartbeat.interval == Duration{60'000});
    CHECK(config.dbus.bus == Bus::session);
    CHECK(config.systemd.ready_on == ReadyOn::started);
    CHECK(config.log.level == "debug");
}

TEST_CASE("null for an optional key means unset; sections may be empty")
{
    const Config config = good("node:\n  id: a\n  domain: ~\nnats:\nlog:\n");
    CHECK(config.node.domain.empty());
    CHECK(config.log.level == "info");
}

TEST_CASE("errors name the file, line, column and key path")
{
    CHECK(error("nats:\n  reconnect:\n    wait: soon\n") ==
        R"(config.yaml:3:11: nats.reconnect.wait: expected a duration like 500ms or 5s, got "soon")");
    CHECK(error("heartbeat:\n  intervall: 5s\n") ==
        "config.yaml:2:3: heartbeat.intervall: unknown key (did you mean interval?)");
    CHECK(error("bogus: 1\n") == "config.yaml:1:1: bogus: unknown key");
}

TEST_CASE("every error is reported, not just the first")
{
    auto result = load_string("heartbeat: {interval: 0s}\nlog: {level: loud}\ndbus: {bus: other}\n", "c.yaml");
    CHECK(result.errors.size() == 3);
}

TEST_CASE("ranges are checked with the limits in the message")
{
    CHECK(error("heartbeat: {interval: 50ms}") ==
        R"(config.yaml:1:23: heartbeat.interval: must be at least 100ms, got "50ms")");
    CHECK(
        error("heartbeat: {interval: 2h}") == R"(config.yaml:1:23: heartbeat.interval: must be at most 1h, got "2h")");
    CHECK(error("events: {spool_bytes: -1}") ==
        R"(config.yaml:1:23: events.spool_bytes: expected an integer from 65536 to 1073741824, got "-1")");
    CHECK(error("events: {stream: {max_age: 1h, duplicate_window: 2h}}") ==
        "config.yaml:1:32: events.stream.duplicate_window: must not be longer than events.stream.max_age");
}

TEST_CASE("a list that is not one says what each item must be")
{
    CHECK(error("nats: {servers: ~}") ==
        "config.yaml:1:17: nats.servers: expected a list, each item a URL like nats://host:4222 or "
        "tls://host:4222 (no user or password in it), got null");
}

TEST_CASE("a duration too long to count is too long, not no duration")
{
    CHECK(error("heartbeat: {interval: 99999999999999999999999h}") ==
        R"(config.yaml:1:23: heartbeat.interval: must be at most 1h, got "99999999999999999999999h")");
}

TEST_CASE("combinations of keys that do not go together")
{
    CHECK(error("nats: {user: u}") == "config.yaml:1:8: nats.user: needs nats.password_file");
    CHECK(error("nats: {password_file: p}") == "config.yaml:1:8: nats.password_file: needs nats.user");
    CHECK(error("nats: {token_file: t, nkey_seed_file: s}") ==
        "config.yaml:1:23: nats.nkey_seed_file: only one authentication method may be set; nats.token_file is "
        "set too");
    CHECK(error("nats: {tls: {cert_file: c}}") ==
        "config.yaml:1:14: nats.tls.cert_file: nats.tls.cert_file and nats.tls.key_file go together");
    CHECK(error("nats: {servers: [tls://a:4222, nats://b:4222]}") ==
        "config.yaml:1:8: nats.servers: mixes nats:// and tls:// servers; TLS is required for all of them or none: "
        "write tls:// for every server (nats.tls settings also make TLS required)");
}

TEST_CASE("a key of an earlier version says what replaced it")
{
    CHECK(error("nats: {reconnect: {buffer_bytes: 1024}}") ==
        "config.yaml:1:20: nats.reconnect.buffer_bytes: no longer exists; events.spool_bytes bounds the events kept "
        "until the server has them (on disk)");
}

TEST_CASE("secret paths are absolute or credential names, never relative paths")
{
    CHECK(good("nats: {token_file: /run/secrets/token}").nats.token_file == "/run/secrets/token");
    CHECK(good("nats: {token_file: nats-token}").nats.token_file == "nats-token");
    CHECK(error("nats: {token_file: secrets/token}") ==
        "config.yaml:1:20: nats.token_file: expected an absolute path or a credential name without '/', got "
        "something else (not shown: it may be the secret itself)");
}

TEST_CASE("a credential name is one file name: not . or .., at most 255 bytes")
{
    CHECK(error("nats: {token_file: ..}") ==
        "config.yaml:1:20: nats.token_file: is . or .., a directory, not a "
        "credential name");
    CHECK(error("nats: {tls: {ca_file: .}}").find("is . or .., a directory") != std::string::npos);
    CHECK(good("nats: {token_file: ...}").nats.token_file == "...");
    CHECK(good("nats: {token_file: " + std::string(255, 'n') + "}").nats.token_file.size() == 255);
    CHECK(error("nats: {token_file: " + std::string(256, 'n') + "}") ==
        "config.yaml:1:20: nats.token_file: is a credential name of 256 bytes; a file name has at most 255");
    CHECK(good("nats: {token_file: /" + std::string(300, 'n') + "}").nats.token_file.size() == 301);
}

TEST_CASE("errors never echo a secret")
{
    // The secret itself, written where its file belongs.
    CHECK(error("nats: {token_file: 'tQ9/x+Secret=='}").find("Secret") == std::string::npos);
    CHECK(error("nats: {tls: {key_file: [a]}}") ==
        "config.yaml:1:24: nats.tls.key_file: expected an absolute path or a credential name without '/', got a list");
    // A password in a URL, wherever it is written.
    CHECK(error("nats: {servers: ['nats://u:p@h:4222']}") ==
        "config.yaml:1:18: nats.servers: expected a URL like nats://host:4222 or tls://host:4222 (no user or "
        "password in it), got \"nats://<redacted>@h:4222\"");
    CHECK(
        error("log: {level: 'tls://me:s3/cr@t@h nats://x@y'}").find("got \"tls://<redacted>@h nats://<redacted>@y\"") !=
        std::string::npos);
    CHECK(error("log: {level: 'nats://h:4222'}").find("got \"nats://h:4222\"") != std::string::npos);
}

TEST_CASE("server URLs: nats:// or tls://, host and port, no user info")
{
    for (const char* url : {"nats://127.0.0.1:4222", "tls://hub.example.org:4443", "nats://[::1]:4222", "nats://h",
             "tls://[::1]", "nats://h:1", "nats://h:9999", "nats://h:10000", "nats://h:59999", "nats://h:64999",
             "nats://h:65499", "nats://h:65529", "nats://h:65535"})
        CHECK_MESSAGE(load_string(std::string("nats: {servers: ['") + url + "']}", "c").config, url);
    for (const char* url : {"http://h:4222", "nats://user:pass@h:4222", "h:4222", "nats://", "nats://h:4222/x",
             "nats://h h", "nats://h:", "nats://h:0", "nats://h:04222", "nats://h:65536", "nats://h:65540",
             "nats://h:66000", "nats://h:70000", "nats://a:99999", "nats://h:123456", "nats://[::1", "nats://::1]",
             "nats://[::1[", "nats://[::1\\]"})
        CHECK_MESSAGE(!load_string(std::string("nats: {servers: ['") + url + "']}", "c").config, url);
}

TEST_CASE("strings have a maximum length, checked before any pattern")
{
    // libstdc++'s regex recursed once per byte: 30000 of them overflowed the stack.
    const std::string long_text(30000, 'a');
    CHECK(error("node: {id: " + long_text + "}") == "config.yaml:1:12: node.id: is 30000 bytes long; at most 255");
    CHECK(error("nats: {servers: [nats://" + long_text + "]}") ==
        "config.yaml:1:18: nats.servers: is 30007 bytes long; at most 512");
    CHECK(error("nats: {token_file: /" + long_text + "}") ==
        "config.yaml:1:20: nats.token_file: is 30001 bytes long; at most 4096");
    CHECK(error("node: {labels: {" + std::string(300, 'k') + ": x}}") ==  // YAML allows 1024 for a key
        "config.yaml:1:17: node.labels: key is 300 bytes long; at most 255");
    CHECK(error("node: {labels: {x: " + long_text + "}}") ==
        "config.yaml:1:20: node.labels: value is 30000 bytes long; at most 255");
}

TEST_CASE("the longest string each field allows loads")
{
    // Every pattern runs over its longest input; the ASan build checks that
    // the regex's recursion stays within the stack.
    const std::string name(255, 'n');
    const Config config = good("node: {id: " + name + ", domain: " + name + ", labels: {" + name + ": " + name +
        "}}\nnats: {name: " + name + ", user: " + name + ", password_file: " + name + ", servers: [nats://" +
        std::string(512 - 7, 'h') + "], tls: {ca_file: /" + std::string(4095, 'p') + "}}\nsubjects: {prefix: " + name +
        "}\n");
    CHECK(config.nats.servers.front().size() == 512);
    CHECK(config.nats.tls.ca_file.size() == 4096);
    std::string dotted;
    while (dotted.size() < 255)
        dotted += dotted.size() + 2 <= 255 ? "a." : "a";
    CHECK(good("subjects: {prefix: " + dotted + "}").subjects.prefix.size() == 255);
    std::string wide = "/";  // two bytes a character: the most bytes for the fewest characters
    while (wide.size() + 2 <= 4096)
        wide += "\xc3\xa9";
    CHECK(good("nats: {tls: {ca_file: '" + wide + "'}}").nats.tls.ca_file == wide);
}

TEST_CASE("quoted numbers are strings, plain ones are not")
{
    CHECK(error("events: {spool_bytes: '1024'}").find("expected an integer") != std::string::npos);
    CHECK(good("node: {id: '01', domain: 42}").node.domain == "42");
}

TEST_CASE("file-level problems")
{
    CHECK(error("a: [").find("config.yaml:1:") == 0);
    CHECK(error("a: [").find("YAML syntax error") != std::string::npos);
    CHECK(error("- 1\n- 2\n") == "config.yaml:1:1: expected a mapping, got a list");
    CHECK(error("a: 1\n---\nb: 2\n") ==
        "config.yaml:2:1: a second YAML document (or text YAML cannot read) "
        "starts here; a config is one YAML document");
    // yaml-cpp 0.7 looped on it, reading empty documents without end. It is
    // refused where it starts, in whatever words the yaml-cpp at hand has
    // (0.7: a second document; 0.9: a syntax error).
    CHECK(error(",}\n: le:").starts_with("config.yaml:1:1: "));
    CHECK(error(std::string("node: {id: a}\0", 14)) == "config.yaml: not a text file: a NUL byte at offset 13");
    CHECK(error("node: {id: \xff}") == "config.yaml: not a text file: invalid UTF-8 at offset 11");
    CHECK(error("node: {id: a\x10}") == "config.yaml: not a text file: a control character (byte 16) at offset 12");
    CHECK(error(std::string(max_config_bytes + 1, '#')).find("at most 1048576") != std::string::npos);
}

TEST_CASE("a quoted string without its closing quote is an error, not the rest of the file")
{
    // yaml-cpp 0.7 ends such a string at the end of the file and reports nothing.
    CHECK(error("node:\n  domain: \"abc\n  id: x\nlog:\n  level: bogus\n") ==
        "config.yaml:2:11: unterminated quoted string");
    CHECK(error("node: {domain: 'it''s}\n") == "config.yaml:1:16: unterminated quoted string");
    CHECK(error("node:\n  domain: &d !!str \"abc\n") == "config.yaml:2:11: unterminated quoted string");
    CHECK(error("\xef\xbb\xbfnode:\n  \"domain: x\n") == "config.yaml:2:3: unterminated quoted string");
    CHECK(good("node: {domain: \"a \\\"b\\\" c\"}").node.domain == "a \"b\" c");
    CHECK(good("node: {domain: 'it''s'}").node.domain == "it's");
    CHECK(good("node: {domain: \"two\n  lines\"}").node.domain == "two lines");
    CHECK(good("\xef\xbb\xbfnode: {domain: &d 'x', id: \"y\"}").node.id == "y");
}

TEST_CASE("YAML merge keys are refused as such, not as an unknown key")
{
    CHECK(error("log: &b {level: info}\nnode:\n  <<: *b\n") ==
        "config.yaml:3:3: node: YAML merge keys (<<) are not supported; write the keys out");
    CHECK(error("node: {labels: {<<: {rack: r1}}}\n") ==
        "config.yaml:1:17: node.labels: YAML merge keys (<<) are not supported; write the keys out");
    CHECK(good("node: {labels: {'<<': quoted}}").node.labels.at("<<") == "quoted");  // a quoted key is a key
}

TEST_CASE("duplicate keys are errors, not silently overwritten")
{
    CHECK(
        error("heartbeat: {interval: 1s}\nheartbeat: {interval: 2s}\n") == "config.yaml:2:1: heartbeat: duplicate key");
    CHECK(error("node: {labels: {a: x, a: y}}").find("duplicate key \"a\"") != std::string::npos);
}

TEST_CASE("load_file reports what is wrong with the file itself")
{
    CHECK(load_file("/nonexistent/cim-leaf.yaml").errors.front().str() ==
        "/nonexistent/cim-leaf.yaml: cannot open: No such file or directory");
    CHECK(load_file("/").errors.front().str() == "/: is a directory, not a regular file");
    CHECK(load_file("/dev/null").errors.front().str() == "/dev/null: is not a regular file");
}

TEST_CASE("load_file refuses a FIFO instead of waiting for a writer forever")
{
    char directory[] = "/tmp/cim-leaf-test-XXXXXX";
    REQUIRE(mkdtemp(directory));
    const std::string fifo = std::string(directory) + "/config.yaml";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(load_file(fifo).errors.front().str() == fifo + ": is not a regular file");
    unlink(fifo.c_str());
    rmdir(directory);
}

TEST_CASE("the user and the client name: what nats.c can put into CONNECT unescaped")
{
    // nats.c 3.4.1 writes both into CONNECT's JSON as they are.
    CHECK(error("nats: {name: 'a\"b'}") ==
        R"(config.yaml:1:14: nats.name: expected a name of printable ASCII characters without spaces, '"' or '\', )"
        R"(got "a\"b")");
    CHECK(error("nats: {user: 'a\\b', password_file: p}") ==
        R"(config.yaml:1:14: nats.user: expected a name of printable ASCII characters other than '"' and '\', )"
        R"(got "a\\b")");
    for (const char* bad : {R"("a\"")", R"('a\')", R"("a\tb")", R"("a\u0001")", R"("a\e[31m")", R"("a\x7f")",
             R"("b\u00e4r")", R"("a\nb")", R"("\ud800")"}) {
        CAPTURE(bad);
        CHECK_FALSE(load_string(std::string("nats: {name: ") + bad + "}", "c").config);
        CHECK_FALSE(load_string(std::string("nats: {user: ") + bad + ", password_file: p}", "c").config);
    }
    for (const std::string good : {"'leaf-01'", "'a]b'", "'[x]'", "'it''s'", "'~!#$%&()*+,./:;<=>?@^_`{|}'"}) {
        CAPTURE(good);
        CHECK(load_string("nats: {name: " + good + "}", "c").config);
        CHECK(load_string("nats: {user: " + good + ", password_file: p}", "c").config);
    }
    CHECK(good("nats: {user: 'the leaf', password_file: p}").nats.user == "the leaf");
    CHECK_FALSE(load_string("nats: {name: 'the leaf'}", "c").config);
}

TEST_CASE("keys from the file print as written when plain, quoted when not")
{
    // Unknown keys with YAML escapes: no control character reaches a terminal.
    CHECK(error("\"\\e[31mred\": 1\n") == R"(config.yaml:1:1: "\u001b[31mred": unknown key)");
    CHECK(error("nats:\n  \"x\\nconfig.yaml:9:9: fake\\a\": 1\n") ==
        R"(config.yaml:2:3: nats."x\u000aconfig.yaml:9:9: fake\u0007": unknown key)");
    CHECK(error("\"a.b\": 1\n") == R"(config.yaml:1:1: "a.b": unknown key)");
    CHECK(error("\"\": 1\n") == R"(config.yaml:1:1: "": unknown key)");
    const auto twice = load_string("\"\\e\": 1\n\"\\e\": 2\n", "config.yaml");
    REQUIRE(twice.errors.size() == 2);
    CHECK(twice.errors[1].str() == R"(config.yaml:2:1: "\u001b": duplicate key)");
    CHECK(error("node: {labels: {\"\\e\": x, \"\\e\": y}}") ==
        R"(config.yaml:1:26: node.labels: duplicate key "\u001b")");
    // Plain ones as before.
    CHECK(error("nats: {reconnect: {wayt: 1s}}") ==
        "config.yaml:1:20: nats.reconnect.wayt: unknown key (did you mean wait?)");
    CHECK(error("log: {level: info}\nlog: {level: info}\n") == "config.yaml:2:1: log: duplicate key");
}

#include "config/schema.hpp"

#include <cstdint>
#include <utility>

namespace cim::config {

namespace {

// Stores a leaf's parsed Value, of alternative T, into the member `member` picks.
template <typename T, typename Member> std::function<void(Config&, Value&&)> into(Member member)
{
    return [member](Config& config, Value&& value) { member(config) = std::get<T>(std::move(value)); };
}

#define CIM_MEMBER(path)                                                                                               \
    [](Config & c) -> auto&                                                                                            \
    {                                                                                                                  \
        return c.path;                                                                                                 \
    }

constexpr std::size_t path_length = 4096;  // PATH_MAX
// A 253-byte DNS name, or an IPv6 literal, with scheme and port, with room to spare.
constexpr std::size_t url_length = 512;

Field object(std::string name, std::string description, std::vector<Field> fields)
{
    return Field{.name = std::move(name),
        .kind = Kind::object,
        .description = std::move(description),
        .fields = std::move(fields)};
}

Field secret(std::string name, std::string description, std::function<void(Config&, Value&&)> store)
{
    return Field{.name = std::move(name),
        .kind = Kind::secret_path,
        .description = std::move(description) +
            " An absolute path, or the name of a systemd credential (LoadCredential=) that "
            "resolves in $CREDENTIALS_DIRECTORY. Never the secret itself.",
        .default_note = "not used",
        .pattern = R"(^(/.*|[^/]+)$)",
        .pattern_hint = "an absolute path or a credential name without '/'",
        .max_length = path_length,
        .store = std::move(store)};
}

constexpr std::int64_t hour_ms = 3'600'000;
constexpr std::int64_t day_ms = 24 * hour_ms;

// nats:// or tls://, a host name or bracketed IPv6 address, and an optional
// port from 1 to 65535 without leading zeros. It must be valid ECMAScript
// (std::regex here; JSON Schema validators, with the u flag) and POSIX ERE
// (Nix's builtins.match), and no '\]' or lone ']' is valid in both, so the
// closing bracket is ([][]|[\]]): ECMAScript reads two empty classes (never
// matching) or the class {]}; ERE reads the class {],[} or the characters
// \]. Nix thus also lets '[' or '\]' through there; the daemon does not, and
// the NixOS module runs --check-config on the rendered file.
constexpr const char* server_pattern =
    R"(^(nats|tls)://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+([][]|[\]])))"
    R"((:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?$)";

// Printable ASCII but '"' and '\': nats.c 3.4.1 writes the user and the
// client name into CONNECT's JSON unescaped, where these two would end the
// string early (and let the rest add fields). ']' has a branch of its own,
// ([][]|[\]]), as in server_pattern: ECMAScript matches ']' there; Nix's ERE
// also '\]', which the daemon refuses (the module runs --check-config).
constexpr const char* name_pattern = R"(^([!#-[^-~]|[][]|[\]])+$)";
constexpr const char* user_pattern = R"(^([ !#-[^-~]|[][]|[\]])+$)";

// The monitoring endpoint of the local server: http:// to the loopback
// (127.x.y.z, localhost or [::1]), an optional port, nothing after it. The
// closing bracket of [::1] is written as in server_pattern, for all dialects.
constexpr const char* monitor_pattern =
    R"(^http://(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|localhost|\[::1([][]|[\]])))"
    R"((:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?/?$)";

// A systemd unit name (or a glob of them) as systemd validates names: the
// characters unit_name_is_valid() takes, and a unit type suffix.
constexpr const char* unit_pattern =
    R"(^[A-Za-z0-9:_.\\@*?-]+\.(service|socket|target|device|mount|automount|swap|timer|path|slice|scope)$)";

// A NATS subject token: no dots, wildcards or white space.
constexpr const char* token_pattern = R"(^[A-Za-z0-9_-]+$)";

Field build()
{
    return object("", "cim-leaf configuration.",
        {
            object("node", "This node's identity, copied into every payload.",
                {
                    Field{.name = "id",
                        .kind = Kind::string,
                        .description = "Node id: the subject token under which this node publishes and answers.",
                        .default_note = "the short host name",
                        .pattern = token_pattern,
                        .pattern_hint = "NATS token characters (letters, digits, '_' and '-')",
                        .store = into<std::string>(CIM_MEMBER(node.id))},
                    Field{.name = "domain",
                        .kind = Kind::string,
                        .description = "CIM domain this node belongs to.",
                        .default_note = "none",
                        .store = into<std::string>(CIM_MEMBER(node.domain))},
                    Field{.name = "labels",
                        .kind = Kind::string_map,
                        .description = "Free string labels copied into heartbeats.",
                        .default_value = nlohmann::json::object(),
                        .store = into<std::map<std::string, std::string>>(CIM_MEMBER(node.labels))},
                }),
            object("nats", "Connection to NATS.",
                {
                    Field{.name = "servers",
                        .kind = Kind::string_list,
                        .description = "Server URLs; several form a cluster to fail over between. All nats:// or all "
                                       "tls://, not mixed.",
                        .default_value = {"nats://127.0.0.1:4222"},
                        .pattern = server_pattern,
                        .pattern_hint = "a URL like nats://host:4222 or tls://host:4222 (no user or password in it)",
                        .max_length = url_length,
                        .minimum = 1,
                        .store = into<std::vector<std::string>>(CIM_MEMBER(nats.servers))},
                    Field{.name = "name",
                        .kind = Kind::string,
                        .description = "Client connection name shown by the server.",
                        .default_value = "cim-leaf",
                        .pattern = name_pattern,
                        .pattern_hint = "a name of printable ASCII characters without spaces, '\"' or '\\'",
                        .store = into<std::string>(CIM_MEMBER(nats.name))},
                    secret("credentials_file", "NATS credentials (JWT + NKey seed) file.",
                        into<std::string>(CIM_MEMBER(nats.credentials_file))),
                    Field{.name = "user",
                        .kind = Kind::string,
                        .description = "User name; the password comes from password_file.",
                        .default_note = "not used",
                        .pattern = user_pattern,
                        .pattern_hint = "a name of printable ASCII characters other than '\"' and '\\'",
                        .store = into<std::string>(CIM_MEMBER(nats.user))},
                    secret("password_file", "File holding the password for user.",
                        into<std::string>(CIM_MEMBER(nats.password_file))),
                    secret("token_file", "File holding an authentication token.",
                        into<std::string>(CIM_MEMBER(nats.token_file))),
                    secret("nkey_seed_file", "File holding a user NKey seed.",
                        into<std::string>(CIM_MEMBER(nats.nkey_seed_file))),
                    object("tls",
                        "TLS towards the servers. TLS is required, never negotiated away, when any server "
                        "URL is tls:// or any of these files is set.",
                        {
                            secret("ca_file", "PEM file of the CA that signs the servers' certificates.",
                                into<std::string>(CIM_MEMBER(nats.tls.ca_file))),
                            secret("cert_file", "PEM client certificate.",
                                into<std::string>(CIM_MEMBER(nats.tls.cert_file))),
                            secret("key_file", "PEM private key of the client certificate.",
                                into<std::string>(CIM_MEMBER(nats.tls.key_file))),
                        }),
                    object("reconnect", "Reconnecting after a lost connection (forever).",
                        {
                            Field{.name = "wait",
                                .kind = Kind::duration,
                                .description = "Pause between reconnect attempts to the same server.",
                                .default_value = "2s",
                                .minimum = 10,
                                .maximum = hour_ms,
                                .store = into<Duration>(CIM_MEMBER(nats.reconnect.wait))},
                            Field{.name = "jitter",
                                .kind = Kind::duration,
                                .description = "Random extra pause, so a fleet does not reconnect in lock-step.",
                                .default_value = "500ms",
                                .minimum = 0,
                                .maximum = hour_ms,
                                .store = into<Duration>(CIM_MEMBER(nats.reconnect.jitter))},
                        }),
                }),
            object("subjects", "NATS subjects.",
                {
                    Field{.name = "prefix",
                        .kind = Kind::string,
                        .description = "Subject prefix: <prefix>.<node>.heartbeat and so on.",
                        .default_value = "cim.leaf",
                        .pattern = R"(^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$)",
                        .pattern_hint = "dot-separated NATS tokens without wildcards",
                        .store = into<std::string>(CIM_MEMBER(subjects.prefix))},
                }),
            object("heartbeat", "Heartbeats.",
                {
                    Field{.name = "interval",
                        .kind = Kind::duration,
                        .description = "Time between two heartbeats.",
                        .default_value = "5s",
                        .minimum = 100,
                        .maximum = hour_ms,
                        .store = into<Duration>(CIM_MEMBER(heartbeat.interval))},
                }),
            object("dbus", "The org.cim.Leaf1 D-Bus service.",
                {
                    Field{.name = "bus",
                        .kind = Kind::choice,
                        .description = "Bus to own org.cim.Leaf1 on; none disables D-Bus.",
                        .default_value = "system",
                        .choices = {"system", "session", "none"},
                        .store =
                            [](Config& c, Value&& v) {
                                const auto& s = std::get<std::string>(v);
                                c.dbus.bus = s == "system" ? Bus::system : s == "session" ? Bus::session : Bus::none;
                            }},
                }),
            object("systemd", "The systemd notify protocol.",
                {
                    Field{.name = "ready_on",
                        .kind = Kind::choice,
                        .description = "When to send READY=1: once NATS is connected and subscribed, or as soon "
                                       "as the daemon has started.",
                        .default_value = "connected",
                        .choices = {"connected", "started"},
                        .store =
                            [](Config& c, Value&& v) {
                                c.systemd.ready_on =
                                    std::get<std::string>(v) == "started" ? ReadyOn::started : ReadyOn::connected;
                            }},
                }),
            object("events",
                "Lifecycle events: acknowledged by a JetStream stream and kept in a spool on disk until then.",
                {
                    Field{.name = "delivery",
                        .kind = Kind::choice,
                        .description = "jetstream: each event counts as delivered when the stream acknowledges it "
                                       "(re-sent until then); core: plain publishes, delivered once handed to the "
                                       "server; auto: jetstream when the account has JetStream, else core (health "
                                       "says durable: false).",
                        .default_value = "auto",
                        .choices = {"auto", "jetstream", "core"},
                        .store =
                            [](Config& c, Value&& v) {
                                const auto& s = std::get<std::string>(v);
                                c.events.delivery = s == "jetstream" ? Delivery::jetstream
                                    : s == "core"                    ? Delivery::core
                                                                     : Delivery::automatic;
                            }},
                    object("stream",
                        "The JetStream stream that stores the events. The daemon creates it when it is missing "
                        "(if allowed) and never changes an existing one.",
                        {
                            Field{.name = "name",
                                .kind = Kind::string,
                                .description = "Stream name.",
                                .default_value = "CIM_LEAF_EVENTS",
                                .pattern = token_pattern,
                                .pattern_hint = "letters, digits, '_' and '-'",
                                .store = into<std::string>(CIM_MEMBER(events.stream.name))},
                            Field{.name = "subjects",
                                .kind = Kind::choice,
                                .description = "What a stream the daemon creates captures: every node's events "
                                               "(<prefix>.*.events.>, one stream for a fleet) or this node's "
                                               "(<prefix>.<node>.events.>).",
                                .default_value = "all-nodes",
                                .choices = {"all-nodes", "this-node"},
                                .store =
                                    [](Config& c, Value&& v) {
                                        c.events.stream.all_nodes = std::get<std::string>(v) == "all-nodes";
                                    }},
                            Field{.name = "create",
                                .kind = Kind::boolean,
                                .description = "Whether the daemon may create the stream when it is missing.",
                                .default_value = true,
                                .store = into<bool>(CIM_MEMBER(events.stream.create))},
                            Field{.name = "max_age",
                                .kind = Kind::duration,
                                .description = "How long a stream the daemon creates keeps events; 0s: until "
                                               "max_bytes.",
                                .default_value = "30d",
                                .minimum = 0,
                                .maximum = 3650 * day_ms,
                                .store = into<Duration>(CIM_MEMBER(events.stream.max_age))},
                            Field{.name = "max_bytes",
                                .kind = Kind::integer,
                                .description = "Size of a stream the daemon creates; the oldest events go first.",
                                .default_value = 268435456,
                                .minimum = 1 << 20,
                                .maximum = std::int64_t{1} << 40,
                                .store = into<std::int64_t>(CIM_MEMBER(events.stream.max_bytes))},
                            Field{.name = "duplicate_window",
                                .kind = Kind::duration,
                                .description = "How long a stream the daemon creates remembers event ids, so "
                                               "that a re-sent event is stored once.",
                                .default_value = "2h",
                                .minimum = 1000,
                                .maximum = 7 * day_ms,
                                .store = into<Duration>(CIM_MEMBER(events.stream.duplicate_window))},
                            Field{.name = "domain",
                                .kind = Kind::string,
                                .description = "JetStream domain of the server that holds the stream (its API "
                                               "is then $JS.<domain>.API).",
                                .default_note = "the account's own JetStream ($JS.API)",
                                .pattern = token_pattern,
                                .pattern_hint = "letters, digits, '_' and '-'",
                                .store = into<std::string>(CIM_MEMBER(events.stream.domain))},
                        }),
                    Field{.name = "spool_bytes",
                        .kind = Kind::integer,
                        .description = "Bytes of events kept until acknowledged, on disk under the state "
                                       "directory ($STATE_DIRECTORY, /var/lib/cim-leaf). When full, the oldest are "
                                       "dropped and an events_dropped event records the gap.",
                        .default_value = 8388608,
                        .minimum = 65536,
                        .maximum = 1 << 30,
                        .store = into<std::int64_t>(CIM_MEMBER(events.spool_bytes))},
                }),
            object("uplink",
                "The uplink of the local nats-server to the hub (a NATS leaf node), watched through its "
                "monitoring endpoint's /leafz.",
                {
                    Field{.name = "monitor_url",
                        .kind = Kind::string,
                        .description = "The local nats-server's monitoring endpoint (its http setting), on the "
                                       "loopback only.",
                        .default_note = "the uplink is not watched",
                        .pattern = monitor_pattern,
                        .pattern_hint = "a loopback URL like http://127.0.0.1:8222",
                        .max_length = url_length,
                        .store = into<std::string>(CIM_MEMBER(uplink.monitor_url))},
                    Field{.name = "interval",
                        .kind = Kind::duration,
                        .description = "How often to ask /leafz; an answer may take this long, 2s at most.",
                        .default_value = "5s",
                        .minimum = 100,
                        .maximum = hour_ms,
                        .store = into<Duration>(CIM_MEMBER(uplink.interval))},
                }),
            object("watch",
                "systemd units of this host whose state goes into health, read over the system bus (the "
                "daemon never starts, stops or restarts them).",
                {
                    Field{.name = "units",
                        .kind = Kind::string_list,
                        .description = "Units to watch: names, or globs (cim-*.service) that also take units "
                                       "that appear later.",
                        .default_value = nlohmann::json::array(),
                        .pattern = unit_pattern,
                        .pattern_hint = "a unit name like nats.service, or a glob like cim-*.service",
                        .store = into<std::vector<std::string>>(CIM_MEMBER(watch.units))},
                    Field{.name = "critical",
                        .kind = Kind::string_list,
                        .description = "Those of the watched units (names or globs) whose failure makes health "
                                       "failing rather than degraded.",
                        .default_value = nlohmann::json::array(),
                        .pattern = unit_pattern,
                        .pattern_hint = "a unit name like nats.service, or a glob like cim-*.service",
                        .store = into<std::vector<std::string>>(CIM_MEMBER(watch.critical))},
                }),
            object("log", "Logging.",
                {
                    Field{.name = "level",
                        .kind = Kind::choice,
                        .description = "Lowest level logged.",
                        .default_value = "info",
                        .choices = {"trace", "debug", "info", "warn", "error"},
                        .store = into<std::string>(CIM_MEMBER(log.level))},
                }),
        });
}

#undef CIM_MEMBER

}  // namespace

const Field& schema()
{
    static const Field root = build();
    return root;
}

}  // namespace cim::config

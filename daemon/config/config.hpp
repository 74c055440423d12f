#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config/duration.hpp"

namespace cim::config {

// The daemon's typed configuration, mirroring the YAML file section by
// section. Defaults live in the schema (schema.cpp), not here: a Config is
// only ever made by `load_*` in load.hpp.

enum class Bus { system, session, none };
enum class ReadyOn { connected, started };
enum class Delivery { automatic, jetstream, core };

struct NodeConfig {
    std::string id;  // resolved: the short host name when the file leaves it unset
    std::string domain;
    std::map<std::string, std::string> labels;
    bool operator==(const NodeConfig&) const = default;
};

// Secret and certificate paths as written: absolute, or a credential name
// that resolves against $CREDENTIALS_DIRECTORY (nats/auth.hpp). Empty: unused.
struct TlsConfig {
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
    bool operator==(const TlsConfig&) const = default;
};

struct ReconnectConfig {
    Duration wait{};
    Duration jitter{};
    bool operator==(const ReconnectConfig&) const = default;
};

struct NatsConfig {
    std::vector<std::string> servers;
    std::string name;
    std::string credentials_file;
    std::string user;
    std::string password_file;
    std::string token_file;
    std::string nkey_seed_file;
    TlsConfig tls;
    ReconnectConfig reconnect;
    bool operator==(const NatsConfig&) const = default;
};

struct SubjectsConfig {
    std::string prefix;
    bool operator==(const SubjectsConfig&) const = default;
};

struct HeartbeatConfig {
    Duration interval{};
    bool operator==(const HeartbeatConfig&) const = default;
};

struct DbusConfig {
    Bus bus = Bus::system;
    bool operator==(const DbusConfig&) const = default;
};

struct SystemdConfig {
    ReadyOn ready_on = ReadyOn::connected;
    bool operator==(const SystemdConfig&) const = default;
};

struct StreamConfig {
    std::string name;
    bool all_nodes = true;  // <prefix>.*.events.>, or only <prefix>.<node>.events.>
    bool create = true;
    Duration max_age{};  // 0: kept until max_bytes
    std::int64_t max_bytes = 0;
    Duration duplicate_window{};
    std::string domain;  // JetStream domain; empty: the account's own
    bool operator==(const StreamConfig&) const = default;
};

struct EventsConfig {
    Delivery delivery = Delivery::automatic;
    StreamConfig stream;
    std::int64_t spool_bytes = 0;
    bool operator==(const EventsConfig&) const = default;
};

struct UplinkConfig {
    std::string monitor_url;  // empty: not watched
    Duration interval{};
    bool operator==(const UplinkConfig&) const = default;
};

struct WatchConfig {
    std::vector<std::string> units;  // names or globs
    std::vector<std::string> critical;  // those whose failure means `failing`
    bool operator==(const WatchConfig&) const = default;
};

struct LogConfig {
    std::string level;
    bool operator==(const LogConfig&) const = default;
};

struct Config {
    NodeConfig node;
    NatsConfig nats;
    SubjectsConfig subjects;
    HeartbeatConfig heartbeat;
    DbusConfig dbus;
    SystemdConfig systemd;
    EventsConfig events;
    UplinkConfig uplink;
    WatchConfig watch;
    LogConfig log;
    bool operator==(const Config&) const = default;
};

}  // namespace cim::config

#include "cli.hpp"

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <vector>

#include "config/duration.hpp"
#include "log.hpp"
#include "util/text.hpp"

namespace cim::cli {

const char* const usage = R"(Usage:
  cim-leaf [--config PATH] [--log-level LEVEL]   run the daemon
  cim-leaf --check-config [--config PATH]        validate the configuration
  cim-leaf --print-config-schema                 JSON Schema of the configuration
  cim-leaf --version
  cim-leaf status [--bus system|session] [--json]   ask the running daemon over D-Bus
  cim-leaf fleet [--config PATH] [--json] [--expect N|NODE,...] [--timeout DURATION]
                 [--server URL]... [--prefix PREFIX]
                 [--creds FILE | --user NAME --password-file FILE | --token-file FILE
                  | --nkey-seed-file FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
                                                 every leaf's health over NATS, one line each

The default configuration is /etc/cim-leaf/config.yaml. LEVEL is one of
trace, debug, info, warn, error and overrides log.level.

fleet sends <prefix>.health, which every leaf answers, and gathers the answers
for --timeout (default 2s), or until the leaves --expect names (or that many)
have answered. It connects as the daemon does, with the configuration's
servers, credentials and TLS files; the flags stand in for those settings,
and with --server and no --config no file is read. A URL list may be
comma-separated. Exit status: 0 every leaf that answered is ok or degraded,
1 a leaf is failing or an expected one did not answer, 3 NATS cannot be
reached, 64 a usage error, 78 an invalid configuration.
)";

namespace {

// Takes "--flag VALUE" or "--flag=VALUE" at args[i]; advances i.
std::optional<std::string> value_of(
    const std::vector<std::string_view>& args, std::size_t& i, std::string_view flag, std::string& error)
{
    const std::string_view arg = args[i];
    if (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag && arg[flag.size()] == '=')
        return std::string(arg.substr(flag.size() + 1));
    if (arg != flag)
        return std::nullopt;
    if (i + 1 >= args.size()) {
        error = std::string(flag) + " needs a value";
        return std::nullopt;
    }
    return std::string(args[++i]);
}

Parsed parse_status(const std::vector<std::string_view>& args)
{
    Status status;
    std::string error;
    for (std::size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--json") {
            status.json = true;
        } else if (auto bus = value_of(args, i, "--bus", error)) {
            if (*bus == "system")
                status.bus = config::Bus::system;
            else if (*bus == "session")
                status.bus = config::Bus::session;
            else
                return {std::nullopt, "--bus must be system or session, got " + *bus};
        } else {
            return {std::nullopt, error.empty() ? "unknown argument to status: " + std::string(args[i]) : error};
        }
    }
    return {status, ""};
}

// A flag of `fleet` that stands in for a key of the config file.
struct Setting {
    std::string_view flag;
    const char* key;
    bool path;  // a file: relative to the working directory, not a credential name
    bool auth;  // one authentication method: given, it replaces the file's
};
constexpr Setting fleet_settings[] = {
    {"--creds", "nats.credentials_file", true, true},
    {"--user", "nats.user", false, true},
    {"--password-file", "nats.password_file", true, true},
    {"--token-file", "nats.token_file", true, true},
    {"--nkey-seed-file", "nats.nkey_seed_file", true, true},
    {"--tls-ca", "nats.tls.ca_file", true, false},
    {"--tls-cert", "nats.tls.cert_file", true, false},
    {"--tls-key", "nats.tls.key_file", true, false},
    {"--prefix", "subjects.prefix", false, false},
};

std::string absolute(const std::string& path)
{
    std::error_code error;
    const auto made = std::filesystem::absolute(path, error);
    return path.empty() || error ? path : made.string();
}

// The settings the flags gave, as overrides of the file's keys. An
// authentication flag drops the file's other methods.
std::vector<config::Override> overrides(
    const std::vector<std::string>& servers, const std::vector<std::pair<const Setting*, std::string>>& given)
{
    std::vector<config::Override> out;
    if (!servers.empty())
        out.push_back({"--server", "nats.servers", servers});
    const Setting* auth_flag = nullptr;
    for (const auto& [setting, value] : given) {
        out.push_back({std::string(setting->flag), setting->key, setting->path ? absolute(value) : value});
        if (setting->auth && !auth_flag)
            auth_flag = setting;
    }
    if (auth_flag)
        for (const Setting& setting : fleet_settings)
            if (setting.auth &&
                std::none_of(given.begin(), given.end(), [&](const auto& g) { return g.first == &setting; }))
                out.push_back({std::string(auth_flag->flag), setting.key, nullptr});
    return out;
}

constexpr config::Duration shortest_timeout{10};
constexpr config::Duration longest_timeout{3'600'000};

Parsed parse_fleet(const std::vector<std::string_view>& args)
{
    Fleet fleet;
    std::vector<std::string> servers;
    std::vector<std::pair<const Setting*, std::string>> given;  // in order; a later one wins
    std::string error;
    auto setting = [&](std::size_t& i) {
        for (const Setting& candidate : fleet_settings)
            if (auto value = value_of(args, i, candidate.flag, error)) {
                std::erase_if(given, [&](const auto& g) { return g.first == &candidate; });
                given.emplace_back(&candidate, std::move(*value));
                return true;
            }
        return false;
    };
    for (std::size_t i = 1; i < args.size() && error.empty(); ++i) {
        if (args[i] == "--json") {
            fleet.json = true;
        } else if (args[i] == "--help" || args[i] == "-h") {
            return {Help{}, ""};
        } else if (auto path = value_of(args, i, "--config", error)) {
            fleet.config_path = std::move(*path);
        } else if (auto urls = value_of(args, i, "--server", error)) {
            for (auto& url : util::split(*urls, ','))
                servers.push_back(std::move(url));
        } else if (auto text = value_of(args, i, "--expect", error)) {
            auto parsed = fleet::parse_expectation(*text);
            if (auto* problem = std::get_if<std::string>(&parsed))
                return {std::nullopt, *problem};
            fleet.expect = std::get<fleet::Expectation>(parsed);
        } else if (auto text = value_of(args, i, "--timeout", error)) {
            const auto timeout = config::parse_duration(*text);
            if (!timeout || *timeout < shortest_timeout || *timeout > longest_timeout)
                return {std::nullopt,
                    "--timeout must be a duration like 500ms or 5s, from " + config::format_duration(shortest_timeout) +
                        " to " + config::format_duration(longest_timeout) + "; got " + *text};
            fleet.timeout = *timeout;
        } else if (!setting(i) && error.empty()) {
            error = "unknown argument to fleet: " + std::string(args[i]);
        }
    }
    if (!error.empty())
        return {std::nullopt, error};
    if (!fleet.config_path && servers.empty())
        fleet.config_path = default_config_path;
    fleet.overrides = overrides(servers, given);
    return {fleet, ""};
}

}  // namespace

Parsed parse(int argc, char** argv)
{
    std::vector<std::string_view> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "status")
        return parse_status(args);
    if (!args.empty() && args[0] == "fleet")
        return parse_fleet(args);

    std::string config_path = default_config_path;
    std::optional<std::string> log_level;
    std::optional<Command> mode;
    std::string error;
    auto set_mode = [&](Command command, std::string_view flag) {
        if (mode)
            error = std::string(flag) + " cannot be combined with another mode";
        mode = std::move(command);
    };
    for (std::size_t i = 0; i < args.size() && error.empty(); ++i) {
        const std::string_view arg = args[i];
        if (auto path = value_of(args, i, "--config", error)) {
            config_path = *path;
        } else if (auto level = value_of(args, i, "--log-level", error)) {
            if (!log::parse_level(*level))
                error = "--log-level must be one of trace, debug, info, warn, error; got " + *level;
            log_level = *level;
        } else if (!error.empty()) {
            break;
        } else if (arg == "--check-config") {
            set_mode(CheckConfig{}, arg);
        } else if (arg == "--print-config-schema") {
            set_mode(PrintSchema{}, arg);
        } else if (arg == "--version") {
            set_mode(PrintVersion{}, arg);
        } else if (arg == "--help" || arg == "-h") {
            set_mode(Help{}, arg);
        } else {
            error = "unknown argument: " + std::string(arg);
        }
    }
    if (!error.empty())
        return {std::nullopt, error};
    if (!mode)
        return {Run{config_path, log_level}, ""};
    if (auto* check = std::get_if<CheckConfig>(&*mode))
        check->config_path = config_path;
    return {mode, ""};
}

}  // namespace cim::cli

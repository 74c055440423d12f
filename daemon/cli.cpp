#include "cli.hpp"

#include <string_view>
#include <vector>

#include "log.hpp"

namespace cim::cli {

const char* const usage = R"(Usage:
  cim-leaf [--config PATH] [--log-level LEVEL]   run the daemon
  cim-leaf --check-config [--config PATH]        validate the configuration
  cim-leaf --print-config-schema                 JSON Schema of the configuration
  cim-leaf --version
  cim-leaf status [--bus system|session] [--json]   ask the running daemon over D-Bus

The default configuration is /etc/cim-leaf/config.yaml. LEVEL is one of
trace, debug, info, warn, error and overrides log.level.
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

}  // namespace

Parsed parse(int argc, char** argv)
{
    std::vector<std::string_view> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "status")
        return parse_status(args);

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

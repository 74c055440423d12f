#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config/config.hpp"
#include "config/load.hpp"
#include "fleet/expect.hpp"

namespace cim::cli {

inline constexpr const char* default_config_path = "/etc/cim-leaf/config.yaml";

// sysexits.h: the unit sets RestartPreventExitStatus=78 so systemd does not
// restart a daemon whose configuration is wrong.
inline constexpr int exit_config = 78;
inline constexpr int exit_usage = 64;
inline constexpr int exit_not_running = 3;

struct Run {
    std::string config_path = default_config_path;
    std::optional<std::string> log_level;
};
struct CheckConfig {
    std::string config_path = default_config_path;
};
struct PrintSchema { };
struct PrintVersion { };
struct Status {
    config::Bus bus = config::Bus::system;
    bool json = false;
};
struct Fleet {
    std::optional<std::string> config_path;  // none: no file (--server without --config)
    std::vector<config::Override> overrides;  // what the connection flags set instead of the file
    std::optional<fleet::Expectation> expect;
    std::chrono::milliseconds timeout{2000};  // how long answers are gathered
    bool json = false;
};
struct Help { };

using Command = std::variant<Run, CheckConfig, PrintSchema, PrintVersion, Status, Fleet, Help>;

struct Parsed {
    std::optional<Command> command;
    std::string error;  // set when command is not
};

Parsed parse(int argc, char** argv);

extern const char* const usage;

}  // namespace cim::cli

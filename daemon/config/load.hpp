#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace cim::config {

// One problem in a config file, printed as
//   config.yaml:7:3: nats.reconnect.wait: expected a duration like 500ms or 5s, got "soon"
struct Diagnostic {
    std::string file;
    int line = 0;  // 1-based; 0 when the problem has no place in the file
    int column = 0;
    std::string key;  // dotted key path; empty for file-level problems
    std::string message;

    std::string str() const;
};

// Where the keys were written in the config file, so that problems found
// after loading (a secret file that cannot be read) point at the key, as
// loading errors do.
struct Origin {
    struct Place {
        int line = 0;  // 1-based
        int column = 0;
        std::string flag;  // set when a command-line flag gave the key: errors name it, not the file
    };
    std::string file;
    std::map<std::string, Place> keys;  // dotted key path -> where it stands
};

// A problem found after loading, at the key `origin` knows the place of
// (the file alone when it does not).
Diagnostic diagnostic_at(const Origin& origin, std::string key, std::string message);

struct LoadResult {
    std::optional<Config> config;  // set exactly when `errors` is empty
    std::vector<Diagnostic> errors;
    Origin origin;
};

// Larger files are refused before parsing: a config is a few hundred bytes.
inline constexpr std::size_t max_config_bytes = 1 << 20;

LoadResult load_file(const std::string& path);
LoadResult load_string(std::string_view text, const std::string& file_name);

// A key given on the command line in place of the file's (cim-leaf fleet
// --server ...), checked as the file's keys are.
struct Override {
    std::string flag;  // how errors name it: "--server"
    std::string key;  // the dotted key path: "nats.servers"
    nlohmann::json value;  // as the file would write it; null: as if the file did not set the key
};

// The file at `path` (none: every key at its default) with `overrides` in
// place of what it says about their keys. A problem with an override is
// reported at its flag: "--server: nats.servers: expected ...".
LoadResult load(const std::optional<std::string>& path, const std::vector<Override>& overrides);

}  // namespace cim::config

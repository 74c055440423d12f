#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

}  // namespace cim::config

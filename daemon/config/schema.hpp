#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace cim::config {

// The one declaration of the configuration. It drives YAML parsing and
// validation (load.cpp), defaults, the JSON Schema (--print-config-schema,
// proto/config.schema.json) and the NixOS options (nixos-module/options.nix).

enum class Kind {
    object,
    string,
    boolean,
    integer,
    duration,
    choice,
    string_list,
    string_map,
    secret_path,
};

using Value = std::variant<std::string, bool, std::int64_t, Duration, std::vector<std::string>,
    std::map<std::string, std::string>>;

struct Field {
    std::string name;
    Kind kind = Kind::object;
    std::string description;
    std::vector<Field> fields;  // members of an object

    // The default as JSON (the same spelling a YAML file uses); null when the
    // key is optional, and then `default_note` says what unset means.
    nlohmann::json default_value;
    std::string default_note;

    std::string pattern;  // ECMAScript regex a string (or each list item) must match
    std::string pattern_hint;  // the pattern in words, for error messages
    // String kinds (also each list item, map key and map value): the longest
    // value in bytes, checked before any pattern because libstdc++'s regex
    // recurses once per byte and overflows the stack on long input. Bytes, as
    // the kernel counts PATH_MAX and NAME_MAX; the JSON Schema's maxLength
    // counts characters, which is the same for ASCII.
    std::size_t max_length = 255;
    std::vector<std::string> choices;
    // integer: the value; duration: milliseconds; string_list: the length.
    std::int64_t minimum = 0;
    std::int64_t maximum = INT64_MAX;

    std::function<void(Config&, Value&&)> store;  // unset for objects
};

const Field& schema();

// Schema walks that produce the generated contract files.
nlohmann::json json_schema();
std::string nix_options();

}  // namespace cim::config

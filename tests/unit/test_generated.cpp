#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <regex>

#include "config/duration.hpp"
#include "config/schema.hpp"

using namespace cim::config;

TEST_CASE("the JSON Schema covers every key with its default")
{
    const auto schema = json_schema();
    CHECK(schema["$schema"] == "https://json-schema.org/draft/2020-12/schema");
    CHECK(schema["additionalProperties"] == false);
    const auto& nats = schema["properties"]["nats"]["properties"];
    CHECK(nats["servers"]["default"] == nlohmann::json::array({"nats://127.0.0.1:4222"}));
    CHECK(nats["servers"]["minItems"] == 1);
    CHECK(nats["reconnect"]["properties"]["wait"]["default"] == "2s");
    CHECK(nats["password_file"]["type"] == nlohmann::json::array({"string", "null"}));
    CHECK(schema["properties"]["dbus"]["properties"]["bus"]["enum"] ==
        nlohmann::json::array({"system", "session", "none"}));
    CHECK(schema["properties"]["node"]["properties"]["labels"]["additionalProperties"]["type"] == "string");
    // Every string has a maximum length.
    CHECK(schema["properties"]["node"]["properties"]["id"]["maxLength"] == 255);
    CHECK(nats["token_file"]["maxLength"] == 4096);
    CHECK(nats["servers"]["items"]["maxLength"] == 512);
    CHECK(schema["properties"]["node"]["properties"]["labels"]["propertyNames"]["maxLength"] == 255);
    CHECK(schema["properties"]["node"]["properties"]["labels"]["additionalProperties"]["maxLength"] == 255);
}

TEST_CASE("the NixOS options are typed like the schema")
{
    const std::string nix = nix_options();
    CHECK(nix.find("{ lib, ... }:") != std::string::npos);
    CHECK(nix.find("bus = lib.mkOption {\n        type = lib.types.enum [ \"system\" \"session\" \"none\" ];") !=
        std::string::npos);
    CHECK(nix.find("spool_bytes = lib.mkOption {\n        type = lib.types.ints.between 65536 1073741824;") !=
        std::string::npos);
    CHECK(nix.find("create = lib.mkOption {\n          type = lib.types.bool;\n          default = true;") !=
        std::string::npos);
    CHECK(
        nix.find("labels = lib.mkOption {\n        type = lib.types.attrsOf lib.types.str;\n        default = { };") !=
        std::string::npos);
    // Nix strings: no antiquotation from a '$' in a pattern or text.
    CHECK(nix.find("${") == std::string::npos);
}

namespace {

void each_pattern(const Field& field, const std::function<void(const Field&)>& visit)
{
    if (!field.pattern.empty())
        visit(field);
    for (const Field& member : field.fields)
        each_pattern(member, visit);
}

}  // namespace

TEST_CASE("every pattern is valid POSIX ERE too, as Nix's builtins.match reads it")
{
    // Nix compiles strMatching patterns with std::regex::extended; a pattern
    // only ECMAScript accepts would make every NixOS configuration fail.
    each_pattern(schema(),
        [](const Field& field) { CHECK_NOTHROW_MESSAGE(std::regex(field.pattern, std::regex::extended), field.name); });
    const std::regex servers(schema().fields[1].fields[0].pattern, std::regex::extended);
    CHECK(std::regex_match("nats://[::1]:4222", servers));
    CHECK(std::regex_match("tls://hub.example:4443", servers));
    CHECK(std::regex_match("tls://hub.example:65535", servers));
    CHECK_FALSE(std::regex_match("http://hub:4222", servers));
    CHECK_FALSE(std::regex_match("nats://hub:65536", servers));
}

namespace {

// Every property of the JSON Schema that has a default, with its path.
void each_default(const nlohmann::json& schema, const std::string& path,
    const std::function<void(const std::string&, const nlohmann::json&)>& visit)
{
    if (schema.contains("default"))
        visit(path, schema);
    if (schema.contains("properties"))
        for (const auto& [name, member] : schema["properties"].items())
            each_default(member, path.empty() ? name : path + "." + name, visit);
}

}  // namespace

TEST_CASE("every default is valid by its own schema: pattern, range and choices")
{
    // A NixOS option that refuses its own default fails every system that
    // imports the module.
    each_default(json_schema(), "", [](const std::string& path, const nlohmann::json& property) {
        CAPTURE(path);
        const auto& value = property["default"];
        if (property.contains("pattern") && value.is_string())
            CHECK(std::regex_search(value.get<std::string>(), std::regex(property["pattern"].get<std::string>())));
        if (property.contains("items") && property["items"].contains("pattern") && value.is_array())
            for (const auto& item : value)
                CHECK(std::regex_search(
                    item.get<std::string>(), std::regex(property["items"]["pattern"].get<std::string>())));
        if (property.contains("enum"))
            CHECK(std::find(property["enum"].begin(), property["enum"].end(), value) != property["enum"].end());
        if (property.contains("minimum") && value.is_number())
            CHECK(value >= property["minimum"]);
        if (property.contains("maximum") && value.is_number())
            CHECK(value <= property["maximum"]);
    });
}

TEST_CASE("the duration pattern knows every unit the parser reads")
{
    const std::regex pattern(duration_pattern());
    for (const char* text : {"500ms", "5s", "2m", "1h", "30d"}) {
        CAPTURE(text);
        CHECK(std::regex_search(text, pattern));
        CHECK(parse_duration(text));
    }
    CHECK_FALSE(std::regex_search("5w", pattern));
    CHECK_FALSE(parse_duration("5w"));
}

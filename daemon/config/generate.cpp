// The schema walks behind proto/config.schema.json and nixos-module/options.nix.
#include <sstream>

#include "config/duration.hpp"
#include "config/schema.hpp"

namespace cim::config {

namespace {

// The description plus what the schema knows beyond the type, in words.
std::string full_description(const Field& field)
{
    std::string text = field.description;
    if (field.kind == Kind::duration)
        text += " A duration like 500ms, 5s, 2m, 1h or 30d, from " + format_duration(Duration{field.minimum}) + " to " +
            format_duration(Duration{field.maximum}) + ".";
    if (field.default_value.is_null() && !field.default_note.empty())
        text += " Unset: " + field.default_note + ".";
    return text;
}

nlohmann::json json_schema_of(const Field& field)
{
    nlohmann::json out;
    if (!field.description.empty())
        out["description"] = full_description(field);
    switch (field.kind) {
    case Kind::object:
        out["type"] = "object";
        out["additionalProperties"] = false;
        out["properties"] = nlohmann::json::object();
        for (const Field& member : field.fields)
            out["properties"][member.name] = json_schema_of(member);
        return out;  // an object's default is the sum of its members'
    case Kind::string:
    case Kind::secret_path:
        out["type"] = "string";
        out["maxLength"] = field.max_length;
        if (!field.pattern.empty())
            out["pattern"] = field.pattern;
        break;
    case Kind::boolean:
        out["type"] = "boolean";
        break;
    case Kind::integer:
        out["type"] = "integer";
        out["minimum"] = field.minimum;
        out["maximum"] = field.maximum;
        break;
    case Kind::duration:
        out["type"] = "string";
        out["pattern"] = duration_pattern();
        break;
    case Kind::choice:
        out["type"] = "string";
        out["enum"] = field.choices;
        break;
    case Kind::string_list:
        out["type"] = "array";
        out["items"] = {{"type", "string"}, {"maxLength", field.max_length}, {"pattern", field.pattern}};
        out["minItems"] = field.minimum;
        break;
    case Kind::string_map:
        out["type"] = "object";
        out["propertyNames"] = {{"maxLength", field.max_length}};
        out["additionalProperties"] = {{"type", "string"}, {"maxLength", field.max_length}};
        break;
    }
    if (field.default_value.is_null())
        out["type"] = {out["type"], "null"};  // optional: null or absent means unset
    out["default"] = field.default_value;
    return out;
}

std::string nix_string(const std::string& text)
{
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\')
            out += '\\';
        if (c == '$') {
            out += "\\$";  // no antiquotation
            continue;
        }
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out + "\"";
}

std::string nix_value(const nlohmann::json& value)
{
    if (value.is_null())
        return "null";
    if (value.is_string())
        return nix_string(value.get<std::string>());
    if (value.is_array()) {
        std::string out = "[";
        for (const auto& item : value)
            out += " " + nix_value(item);
        return out + (value.empty() ? "]" : " ]");
    }
    if (value.is_object())
        return value.empty() ? "{ }" : "builtins.fromJSON " + nix_string(value.dump());
    return value.dump();  // numbers and booleans are spelled alike
}

std::string nix_type(const Field& field)
{
    std::string type;
    switch (field.kind) {
    case Kind::string:
    case Kind::secret_path:
        type = field.pattern.empty() ? "lib.types.str" : "lib.types.strMatching " + nix_string(field.pattern);
        break;
    case Kind::boolean:
        type = "lib.types.bool";
        break;
    case Kind::integer:
        type = "lib.types.ints.between " + std::to_string(field.minimum) + " " + std::to_string(field.maximum);
        break;
    case Kind::duration:
        type = "lib.types.strMatching " + nix_string(duration_pattern());
        break;
    case Kind::choice:
        type = "lib.types.enum " + nix_value(field.choices);
        break;
    case Kind::string_list:
        type = field.minimum > 0 ? "lib.types.nonEmptyListOf" : "lib.types.listOf";
        type += " (lib.types.strMatching " + nix_string(field.pattern) + ")";
        break;
    case Kind::string_map:
        type = "lib.types.attrsOf lib.types.str";
        break;
    case Kind::object:
        break;
    }
    if (!field.default_value.is_null())
        return type;
    return type.find(' ') == std::string::npos ? "lib.types.nullOr " + type : "lib.types.nullOr (" + type + ")";
}

void nix_options_of(const Field& field, const std::string& indent, std::ostringstream& out)
{
    for (const Field& member : field.fields) {
        if (member.kind == Kind::object) {
            out << indent << member.name << " = {\n";
            nix_options_of(member, indent + "  ", out);
            out << indent << "};\n";
            continue;
        }
        out << indent << member.name << " = lib.mkOption {\n"
            << indent << "  type = " << nix_type(member) << ";\n"
            << indent << "  default = " << nix_value(member.default_value) << ";\n"
            << indent << "  description = " << nix_string(full_description(member)) << ";\n"
            << indent << "};\n";
    }
}

}  // namespace

nlohmann::json json_schema()
{
    nlohmann::json out = {
        {"$schema", "https://json-schema.org/draft/2020-12/schema"},
        {"$id", "https://cim.example/schemas/cim-leaf/config.schema.json"},
        {"title", "cim-leaf configuration"},
    };
    out.update(json_schema_of(schema()));
    return out;
}

std::string nix_options()
{
    std::ostringstream out;
    out << "# GENERATED by `meson compile -C build generate` from the daemon's config\n"
           "# schema (daemon/config/schema.cpp). Do not edit.\n"
           "{ lib, ... }:\n"
           "{\n"
           "  options = {\n";
    nix_options_of(schema(), "    ", out);
    out << "  };\n"
           "}\n";
    return out.str();
}

}  // namespace cim::config

#include "config/load.hpp"

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "config/schema.hpp"
#include "util/file.hpp"
#include "util/text.hpp"

namespace cim::config {

std::string Diagnostic::str() const
{
    std::string out = file;
    if (line > 0)
        out += ":" + std::to_string(line) + ":" + std::to_string(column);
    out += ": ";
    if (!key.empty())
        out += key + ": ";
    return out + message;
}

Diagnostic diagnostic_at(const Origin& origin, std::string key, std::string message)
{
    const auto place = origin.keys.find(key);
    const Origin::Place where = place == origin.keys.end() ? Origin::Place{} : place->second;
    if (!where.flag.empty())
        return {where.flag, 0, 0, std::move(key), std::move(message)};
    return {origin.file, where.line, where.column, std::move(key), std::move(message)};
}

namespace {

// std::regex_traits<char> asks the locale's collation about each of the
// 256 characters of every bracket expression while compiling (a millisecond
// for the server pattern, paid at every start). The schema's patterns are
// ASCII, without equivalence classes or character classes, so the bytes
// themselves decide, as fast and with the same matches.
struct AsciiTraits : std::regex_traits<char> {
    template <typename Iterator> string_type transform_primary(Iterator first, Iterator last) const
    {
        return string_type(first, last);
    }
    bool isctype(char c, char_class_type classes) const
    {
        return classes != char_class_type() && std::regex_traits<char>::isctype(c, classes);
    }
};
using Pattern = std::basic_regex<char, AsciiTraits>;

// `text` with the user:password@ part of every URL in it replaced, so a
// password written into a server URL is not echoed. Everything up to the last
// '@' before white space goes: a password may hold '/' or '@' unencoded.
std::string redact_user_info(std::string_view text)
{
    std::string out(text);
    for (std::size_t scheme = out.find("://"); scheme != std::string::npos; scheme = out.find("://", scheme + 3)) {
        const std::size_t start = scheme + 3;
        const std::size_t end = std::min(out.find_first_of(" \t\r\n", start), out.size());
        const std::size_t at = std::string_view(out).substr(start, end - start).rfind('@');
        if (at != std::string::npos)
            out.replace(start, at, "<redacted>");
    }
    return out;
}

std::string describe(const YAML::Node& node)
{
    switch (node.Type()) {
    case YAML::NodeType::Null:
        return "null";
    case YAML::NodeType::Sequence:
        return "a list";
    case YAML::NodeType::Map:
        return "a mapping";
    default:
        return util::quote(redact_user_info(node.Scalar()));
    }
}

// A secret path's value is never shown: it may be the secret itself,
// written there by mistake.
std::string describe(const Field& field, const YAML::Node& node)
{
    if (field.kind == Kind::secret_path && node.IsScalar())
        return "something else (not shown: it may be the secret itself)";
    return describe(node);
}

// `key` appended to the dotted path `parent`, quoted unless it is a plain
// name: a key from the file may hold escapes (\n, \e[31m) or dots.
std::string join_path(const std::string& parent, const std::string& key)
{
    const std::string shown = util::quote_unless_plain(key, "_-");
    return parent.empty() ? shown : parent + "." + shown;
}

// The closest known key, for "did you mean" hints on typos.
std::string closest(const std::string& key, const std::vector<Field>& fields)
{
    std::string best;
    std::size_t best_distance = 3;  // more edits than this is not a typo
    for (const Field& field : fields) {
        const std::size_t distance = util::edit_distance(key, field.name);
        if (distance < best_distance) {
            best_distance = distance;
            best = field.name;
        }
    }
    return best;
}

// Keys of earlier versions, and what took their place.
std::optional<std::string> replaced_by(const std::string& key_path)
{
    if (key_path == "nats.reconnect.buffer_bytes")
        return "events.spool_bytes bounds the events kept until the server has them (on disk)";
    return std::nullopt;
}

// yaml-cpp 0.7 does not expand YAML merge keys (<<: *anchor); it reads "<<"
// as an ordinary key.
bool is_merge_key(const YAML::Node& key)
{
    return key.IsScalar() && key.Tag() == "?" && key.Scalar() == "<<";
}

constexpr const char* merge_key_unsupported = "YAML merge keys (<<) are not supported; write the keys out";

// What one string of `field` (its value, or an item of its list) must be.
std::string expected_string(const Field& field)
{
    return field.pattern_hint.empty() ? "a string" : field.pattern_hint;
}

std::string expected(const Field& field)
{
    switch (field.kind) {
    case Kind::string:
    case Kind::secret_path:
        return expected_string(field);
    case Kind::boolean:
        return "true or false";
    case Kind::integer:
        return "an integer from " + std::to_string(field.minimum) + " to " + std::to_string(field.maximum);
    case Kind::duration:
        return "a duration like 500ms or 5s";
    case Kind::choice: {
        std::string list;
        for (const auto& choice : field.choices)
            list += (list.empty() ? "" : ", ") + choice;
        return "one of " + list;
    }
    case Kind::string_list:
        return "a list, each item " + expected_string(field);
    case Kind::string_map:
        return "a mapping of strings to strings";
    case Kind::object:
        break;
    }
    return "a mapping";
}

class Loader {
public:
    // `flags`: the keys the command line gives, and the flag that gives each.
    explicit Loader(std::string file, std::map<std::string, std::string> flags = {})
        : file_(std::move(file)), flags_(std::move(flags))
    {
    }

    std::vector<Diagnostic> errors;
    std::map<std::string, YAML::Mark> marks;  // where each key given in the file stands

    void error(const YAML::Mark& mark, std::string key, std::string message)
    {
        add({file_, mark.line + 1, mark.column + 1, std::move(key), std::move(message)});
    }

    void file_error(std::string key, std::string message) { add({file_, 0, 0, std::move(key), std::move(message)}); }

    // Where the keys were written.
    Origin origin() const
    {
        Origin out{file_, {}};
        for (const auto& [key, mark] : marks) {
            const auto flag = flags_.find(key);
            out.keys[key] = {mark.line + 1, mark.column + 1, flag == flags_.end() ? "" : flag->second};
        }
        return out;
    }

    // Reads the mapping `node` against the object `field` into `config`.
    void object(const Field& field, const YAML::Node& node, const std::string& path, Config& config)
    {
        if (node.IsNull())
            return;  // an empty section: all defaults
        if (!node.IsMap()) {
            error(node.Mark(), path, "expected " + expected(field) + ", got " + describe(node));
            return;
        }
        std::set<std::string> seen;
        for (const auto& entry : node) {
            const YAML::Node& key_node = entry.first;
            if (is_merge_key(key_node)) {
                error(key_node.Mark(), path, merge_key_unsupported);
                continue;
            }
            if (!key_node.IsScalar()) {
                error(key_node.Mark(), path, "expected a key name, got " + describe(key_node));
                continue;
            }
            const std::string& key = key_node.Scalar();
            const std::string key_path = join_path(path, key);
            if (!seen.insert(key).second) {
                error(key_node.Mark(), key_path, "duplicate key");
                continue;
            }
            auto member =
                std::find_if(field.fields.begin(), field.fields.end(), [&](const Field& f) { return f.name == key; });
            if (member == field.fields.end()) {
                if (auto successor = replaced_by(key_path)) {
                    error(key_node.Mark(), key_path, "no longer exists; " + *successor);
                    continue;
                }
                const std::string hint = closest(key, field.fields);
                error(key_node.Mark(), key_path,
                    "unknown key" + (hint.empty() ? std::string() : " (did you mean " + hint + "?)"));
                continue;
            }
            marks[key_path] = key_node.Mark();
            value(*member, entry.second, key_path, config);
        }
    }

    void value(const Field& field, const YAML::Node& node, const std::string& path, Config& config)
    {
        if (field.kind == Kind::object) {
            object(field, node, path, config);
            return;
        }
        if (node.IsNull() && field.default_value.is_null())
            return;  // explicitly unset optional key
        if (auto parsed = leaf(field, node, path))
            field.store(config, std::move(*parsed));
    }

private:
    std::optional<Value> leaf(const Field& field, const YAML::Node& node, const std::string& path)
    {
        auto fail = [&](const YAML::Node& where, std::string message) -> std::optional<Value> {
            error(where.Mark(), path, std::move(message));
            return std::nullopt;
        };
        auto mismatch = [&](const YAML::Node& where) {
            return fail(where, "expected " + expected(field) + ", got " + describe(field, where));
        };
        const bool plain = node.IsScalar() && node.Tag() != "!";  // quoted scalars are strings

        switch (field.kind) {
        case Kind::string:
        case Kind::secret_path:
            if (auto problem = string_problem(field, node, expected(field)))
                return fail(node, *problem);
            return Value{node.Scalar()};
        case Kind::boolean:
            if (plain && (node.Scalar() == "true" || node.Scalar() == "false"))
                return Value{node.Scalar() == "true"};
            return mismatch(node);
        case Kind::integer: {
            const auto number = plain ? util::parse_int(node.Scalar()) : std::nullopt;
            if (!number || *number < field.minimum || *number > field.maximum)
                return mismatch(node);
            return Value{*number};
        }
        case Kind::duration: {
            const auto duration = node.IsScalar() ? parse_duration(node.Scalar()) : std::nullopt;
            if (!duration)
                return mismatch(node);
            if (duration->count() < field.minimum)
                return fail(
                    node, "must be at least " + format_duration(Duration{field.minimum}) + ", got " + describe(node));
            if (duration->count() > field.maximum)
                return fail(
                    node, "must be at most " + format_duration(Duration{field.maximum}) + ", got " + describe(node));
            return Value{*duration};
        }
        case Kind::choice:
            if (!node.IsScalar() ||
                std::find(field.choices.begin(), field.choices.end(), node.Scalar()) == field.choices.end())
                return mismatch(node);
            return Value{node.Scalar()};
        case Kind::string_list: {
            if (!node.IsSequence())
                return mismatch(node);
            std::vector<std::string> items;
            for (const auto& item : node) {
                if (auto problem = string_problem(field, item, expected_string(field)))
                    return fail(item, *problem);
                items.push_back(item.Scalar());
            }
            if (static_cast<std::int64_t>(items.size()) < field.minimum)
                return fail(node,
                    "must list at least " + std::to_string(field.minimum) + " item" + (field.minimum == 1 ? "" : "s"));
            return Value{std::move(items)};
        }
        case Kind::string_map: {
            if (!node.IsMap())
                return mismatch(node);
            std::map<std::string, std::string> map;
            for (const auto& entry : node) {
                if (is_merge_key(entry.first))
                    return fail(entry.first, merge_key_unsupported);
                if (!entry.first.IsScalar() || !entry.second.IsScalar())
                    return fail(entry.second.IsScalar() ? entry.first : entry.second,
                        "expected " + expected(field) + ", got " +
                            describe(entry.second.IsScalar() ? entry.first : entry.second));
                if (auto problem = too_long(field, entry.first.Scalar()))
                    return fail(entry.first, "key " + *problem);
                if (auto problem = too_long(field, entry.second.Scalar()))
                    return fail(entry.second, "value " + *problem);
                if (!map.emplace(entry.first.Scalar(), entry.second.Scalar()).second)
                    return fail(entry.first, "duplicate key " + util::quote(entry.first.Scalar()));
            }
            return Value{std::move(map)};
        }
        case Kind::object:
            break;
        }
        return std::nullopt;
    }

    static std::optional<std::string> too_long(const Field& field, const std::string& text)
    {
        if (text.size() <= field.max_length)
            return std::nullopt;
        return "is " + std::to_string(text.size()) + " bytes long; at most " + std::to_string(field.max_length);
    }

    // Why `node` is not one string of `field` (its value, or an item of its
    // list, described as `wanted`), or nullopt. The length goes first:
    // libstdc++'s regex recurses once per byte and overflows the stack.
    static std::optional<std::string> string_problem(
        const Field& field, const YAML::Node& node, const std::string& wanted)
    {
        if (node.IsScalar())
            if (auto problem = too_long(field, node.Scalar()))
                return problem;
        if (!node.IsScalar() || !matches(field, node.Scalar()))
            return "expected " + wanted + ", got " + describe(field, node);
        if (field.kind == Kind::secret_path)
            return credential_name_problem(node.Scalar());
        return std::nullopt;
    }

    // A relative secret path is one file name in $CREDENTIALS_DIRECTORY.
    // Checked here, not in the pattern: Nix's strMatching has no lookahead.
    static std::optional<std::string> credential_name_problem(const std::string& text)
    {
        constexpr std::size_t name_max = 255;  // NAME_MAX
        if (text.front() == '/')
            return std::nullopt;
        if (text == "." || text == "..")
            return std::string("is . or .., a directory, not a credential name");
        if (text.size() > name_max)
            return "is a credential name of " + std::to_string(text.size()) + " bytes; a file name has at most " +
                std::to_string(name_max);
        return std::nullopt;
    }

    static bool matches(const Field& field, const std::string& text)
    {
        if (field.pattern.empty())
            return true;
        // Patterns are few and small; compiled once per field and cached.
        static std::map<std::string, Pattern> compiled;
        auto it = compiled.try_emplace(field.pattern, field.pattern, Pattern::ECMAScript).first;
        return std::regex_search(text, it->second);
    }

    // A problem at a key the command line gave is the flag's, not the file's.
    void add(Diagnostic diagnostic)
    {
        if (const auto flag = flags_.find(diagnostic.key); flag != flags_.end())
            diagnostic = {flag->second, 0, 0, std::move(diagnostic.key), std::move(diagnostic.message)};
        errors.push_back(std::move(diagnostic));
    }

    std::string file_;
    std::map<std::string, std::string> flags_;
};

// Whether the quoted scalar whose opening quote is at `open` has its closing
// quote: a backslash escapes the next character in double quotes, '' is a
// quote in single quotes.
bool has_closing_quote(std::string_view text, std::size_t open)
{
    const char quote = text[open];
    for (std::size_t i = open + 1; i < text.size(); ++i) {
        if (quote == '"' && text[i] == '\\')
            ++i;
        else if (quote == '\'' && text.substr(i, 2) == "''")
            ++i;
        else if (text[i] == quote)
            return true;
    }
    return false;
}

// Where a scalar's own text starts: a Mark points at its anchor or tag when
// it has them.
std::size_t skip_properties(std::string_view text, std::size_t pos)
{
    while (pos < text.size() && (text[pos] == '&' || text[pos] == '!')) {
        pos = std::min(text.find_first_of(" \t\r\n", pos), text.size());
        pos = std::min(text.find_first_not_of(" \t\r\n", pos), text.size());
    }
    return pos;
}

// Reports what yaml-cpp 0.7 parses past without a word, in one pass over its
// parse events:
// - a second document. Its LoadAll loops forever on some malformed input
//   (found by fuzzing) by reading endless empty documents, so documents are
//   counted here, stopping at two. (yaml-cpp 0.9 throws on some of that
//   input first: a syntax error, at the same place.)
// - a quoted scalar without its closing quote, which yaml-cpp ends at the
//   end of the file, swallowing every key after it.
void report_what_yaml_cpp_misses(Loader& loader, std::string_view text)
{
    class Checker final : public YAML::EventHandler {
    public:
        Checker(Loader& loader, std::string_view text) : loader_(loader), text_(text) { }
        int documents = 0;
        void OnDocumentStart(const YAML::Mark& mark) override
        {
            if (++documents == 2)
                loader_.error(mark, "",
                    "a second YAML document (or text YAML cannot read) starts here; a config is one YAML document");
        }
        void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override
        {
            // Mark.pos counts bytes from after a UTF-8 byte order mark.
            const std::size_t bom = text_.starts_with("\xef\xbb\xbf") ? 3 : 0;
            const std::size_t start = skip_properties(text_, bom + static_cast<std::size_t>(mark.pos));
            if (start < text_.size() && (text_[start] == '"' || text_[start] == '\'') &&
                !has_closing_quote(text_, start))
                loader_.error(mark, "", "unterminated quoted string");
        }
        void OnDocumentEnd() override { }
        void OnNull(const YAML::Mark&, YAML::anchor_t) override { }
        void OnAlias(const YAML::Mark&, YAML::anchor_t) override { }
        void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override
        {
        }
        void OnSequenceEnd() override { }
        void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override { }
        void OnMapEnd() override { }

    private:
        Loader& loader_;
        std::string_view text_;
    };
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    Checker checker(loader, text);
    while (checker.documents < 2 && parser.HandleNextDocument(checker)) { }
}

void apply_defaults(Loader& loader, const Field& field, const std::string& path, Config& config)
{
    for (const Field& member : field.fields) {
        const std::string key_path = join_path(path, member.name);
        if (member.kind == Kind::object)
            apply_defaults(loader, member, key_path, config);
        else if (!member.default_value.is_null())
            loader.value(member, YAML::Load(member.default_value.dump()), key_path, config);
    }
}

// Rules that span several keys, reported at the key that breaks them.
void check_combinations(Loader& loader, const Config& config)
{
    auto at = [&](const std::string& key, std::string message) {
        if (auto mark = loader.marks.find(key); mark != loader.marks.end())
            loader.error(mark->second, key, std::move(message));
        else
            loader.file_error(key, std::move(message));
    };
    const NatsConfig& nats = config.nats;
    if (!nats.user.empty() && nats.password_file.empty())
        at("nats.user", "needs nats.password_file");
    if (nats.user.empty() && !nats.password_file.empty())
        at("nats.password_file", "needs nats.user");

    std::vector<std::string> methods;
    if (!nats.credentials_file.empty())
        methods.push_back("nats.credentials_file");
    if (!nats.user.empty())
        methods.push_back("nats.user");
    if (!nats.token_file.empty())
        methods.push_back("nats.token_file");
    if (!nats.nkey_seed_file.empty())
        methods.push_back("nats.nkey_seed_file");
    if (methods.size() > 1)
        at(methods[1], "only one authentication method may be set; " + methods[0] + " is set too");

    // TLS is all or nothing: with one tls:// server, a plain nats:// one in
    // the same list would be an unencrypted way around it.
    const auto tls_servers = std::count_if(
        nats.servers.begin(), nats.servers.end(), [](const std::string& url) { return url.starts_with("tls://"); });
    if (tls_servers > 0 && tls_servers < static_cast<std::ptrdiff_t>(nats.servers.size()))
        at("nats.servers",
            "mixes nats:// and tls:// servers; TLS is required for all of them or none: write tls:// for every "
            "server (nats.tls settings also make TLS required)");

    // Unit names: what the pattern cannot say. A template is no unit, and a
    // critical unit must be one that is watched.
    for (const auto* key : {"watch.units", "watch.critical"}) {
        const auto& names = std::string_view(key) == "watch.units" ? config.watch.units : config.watch.critical;
        for (const auto& name : names)
            if (name.find("@.") != std::string::npos || name.front() == '@' || name.front() == '.')
                at(key,
                    util::quote(name) +
                        " is not a unit name: a template (foo@.service) is none; name an instance "
                        "(foo@bar.service) or a glob (foo@*.service)");
    }
    for (const auto& critical : config.watch.critical) {
        const auto& units = config.watch.units;
        if (std::none_of(units.begin(), units.end(), [&](const std::string& unit) {
                return unit == critical || fnmatch(unit.c_str(), critical.c_str(), 0) == 0;
            }))
            at("watch.critical", util::quote(critical) + " is not among watch.units");
    }

    const StreamConfig& stream = config.events.stream;
    if (stream.max_age.count() > 0 && stream.duplicate_window > stream.max_age)
        at("events.stream.duplicate_window", "must not be longer than events.stream.max_age");

    if (nats.tls.cert_file.empty() != nats.tls.key_file.empty())
        at(nats.tls.cert_file.empty() ? "nats.tls.key_file" : "nats.tls.cert_file",
            "nats.tls.cert_file and nats.tls.key_file go together");
}

void resolve_node_id(Loader& loader, Config& config)
{
    if (!config.node.id.empty())
        return;
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) {
        loader.file_error("node.id", std::string("not set, and the host name is unknown: ") + std::strerror(errno));
        return;
    }
    std::string id(host, strcspn(host, "."));
    static const Pattern token(R"(^[A-Za-z0-9_-]+$)");
    if (!std::regex_match(id, token)) {
        loader.file_error(
            "node.id", "not set, and the host name " + util::quote(id) + " is not a valid node id: set node.id");
        return;
    }
    config.node.id = std::move(id);
}

LoadResult finish(Loader& loader, Config&& config)
{
    if (loader.errors.empty()) {
        check_combinations(loader, config);
        resolve_node_id(loader, config);
    }
    if (!loader.errors.empty())
        return {std::nullopt, std::move(loader.errors)};
    return {std::move(config), {}, loader.origin()};
}

// A mapping, an empty section, or one that is not there yet.
bool can_hold_keys(const YAML::Node& node)
{
    return node.IsMap() || node.IsNull() || !node.IsDefined();
}

// `override` written into the parsed file, as if the file said it. Where the
// file has something else than a mapping on the way, the file's error says so.
void apply(YAML::Node& document, const Override& override)
{
    if (document.IsNull())  // an empty file: a null yaml-cpp cannot add keys to
        document.reset(YAML::Node(YAML::NodeType::Map));
    YAML::Node node;
    node.reset(document);  // Node's operator= would assign the content
    std::string_view rest = override.key;
    for (std::size_t dot = rest.find('.'); dot != std::string_view::npos; dot = rest.find('.')) {
        if (!can_hold_keys(node))
            return;
        YAML::Node child = node[std::string(rest.substr(0, dot))];
        node.reset(child);
        rest.remove_prefix(dot + 1);
    }
    if (!can_hold_keys(node))
        return;
    if (override.value.is_null())
        node.remove(std::string(rest));
    else
        node[std::string(rest)] = YAML::Load(override.value.dump());
}

LoadResult load_text(std::string_view text, const std::string& file_name, const std::vector<Override>& overrides)
{
    std::map<std::string, std::string> flags;
    for (const Override& override : overrides)
        flags[override.key] = override.flag;
    Loader loader(file_name, std::move(flags));
    if (text.size() > max_config_bytes) {
        loader.file_error("",
            "file is " + std::to_string(text.size()) + " bytes; a config may have at most " +
                std::to_string(max_config_bytes));
        return {std::nullopt, std::move(loader.errors)};
    }
    if (auto bad = util::find_non_text(text)) {
        loader.file_error("", "not a text file: " + *bad);
        return {std::nullopt, std::move(loader.errors)};
    }

    YAML::Node document;
    try {
        report_what_yaml_cpp_misses(loader, text);
        if (!loader.errors.empty())
            return {std::nullopt, std::move(loader.errors)};
        document = YAML::Load(std::string(text));
        for (const Override& override : overrides)
            apply(document, override);
    } catch (const YAML::Exception& e) {
        // An unterminated quote found before the syntax error explains it.
        if (loader.errors.empty())
            loader.error(e.mark, "", "YAML syntax error: " + e.msg);
        return {std::nullopt, std::move(loader.errors)};
    }

    Config config;
    apply_defaults(loader, schema(), "", config);
    loader.object(schema(), document, "", config);
    return finish(loader, std::move(config));
}

}  // namespace

LoadResult load_string(std::string_view text, const std::string& file_name)
{
    return load_text(text, file_name, {});
}

LoadResult load(const std::optional<std::string>& path, const std::vector<Override>& overrides)
{
    if (!path)
        return load_text("", "the defaults", overrides);
    auto file = util::read_regular_file(*path, max_config_bytes);
    if (!file.text)
        return {std::nullopt, {Diagnostic{*path, 0, 0, "", std::move(file.error)}}};
    return load_text(*file.text, *path, overrides);
}

LoadResult load_file(const std::string& path)
{
    return load(path, {});
}

}  // namespace cim::config

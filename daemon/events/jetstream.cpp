#include "events/jetstream.hpp"

#include <chrono>
#include <vector>

#include "util/json.hpp"

namespace cim::events::jetstream {

namespace {

std::vector<std::string_view> tokens(std::string_view subject)
{
    std::vector<std::string_view> out;
    for (std::size_t start = 0;;) {
        const std::size_t dot = subject.find('.', start);
        out.push_back(subject.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos)
            return out;
        start = dot + 1;
    }
}

std::int64_t nanoseconds(config::Duration duration)
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
}

}  // namespace

std::string api(const config::StreamConfig& stream)
{
    return stream.domain.empty() ? "$JS.API" : "$JS." + stream.domain + ".API";
}

std::string node_events(const config::Config& config)
{
    return config.subjects.prefix + "." + config.node.id + ".events.>";
}

std::string create_request(const config::Config& config)
{
    const config::StreamConfig& stream = config.events.stream;
    return util::dump({
        {"name", stream.name},
        {"subjects", {stream.all_nodes ? config.subjects.prefix + ".*.events.>" : node_events(config)}},
        {"retention", "limits"},
        {"storage", "file"},
        {"discard", "old"},
        {"num_replicas", 1},
        {"max_age", nanoseconds(stream.max_age)},
        {"max_bytes", stream.max_bytes},
        {"duplicate_window", nanoseconds(stream.duplicate_window)},
    });
}

bool covers(std::string_view filter, std::string_view subjects)
{
    const auto wanted = tokens(filter);
    const auto given = tokens(subjects);
    for (std::size_t i = 0; i < wanted.size(); ++i) {
        if (wanted[i] == ">")
            return i < given.size();  // one or more tokens, whatever they are
        if (i >= given.size() || given[i] == ">")
            return false;  // `subjects` goes on where the filter does not
        if (wanted[i] != "*" && (given[i] == "*" || given[i] != wanted[i]))
            return false;
    }
    return wanted.size() == given.size();
}

Reply parse(const nats::Answer& answer)
{
    if (answer.no_responders)
        return {Reply::Kind::no_responders, 503, 0, "no responders", {}};
    nlohmann::json body = nlohmann::json::parse(answer.payload, nullptr, false);
    if (body.is_discarded() || !body.is_object())
        return {Reply::Kind::garbage, 0, 0, "not a JetStream answer: " + answer.payload.substr(0, 80), {}};
    if (const auto error = body.find("error"); error != body.end() && error->is_object())
        return {Reply::Kind::error, error->value("code", 0), error->value("err_code", 0),
            error->value("description", std::string("unknown error")), body};
    return {Reply::Kind::ok, 0, 0, {}, std::move(body)};
}

std::string unfit(const nlohmann::json& info, const config::Config& config)
{
    const std::string wanted = node_events(config);
    const auto cfg = info.find("config");
    if (cfg == info.end() || !cfg->is_object())
        return "the STREAM.INFO answer has no config";
    for (const auto& filter : cfg->value("subjects", nlohmann::json::array()))
        if (filter.is_string() && covers(filter.get<std::string>(), wanted))
            return {};
    return "stream " + config.events.stream.name + " does not capture " + wanted +
        " (its subjects: " + cfg->value("subjects", nlohmann::json::array()).dump() +
        "); the daemon never changes an existing stream";
}

}  // namespace cim::events::jetstream

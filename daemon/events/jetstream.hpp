#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "nats/connection.hpp"

// The JetStream API as the daemon speaks it, over plain request-reply: the
// subjects, the stream it creates, and what the server's answers mean.
// Pure functions, so every answer is unit-tested.
namespace cim::events::jetstream {

// $JS.API, or $JS.<domain>.API for a stream in another JetStream domain.
std::string api(const config::StreamConfig& stream);

// What the stream must capture: this node's events, <prefix>.<node>.events.>
std::string node_events(const config::Config& config);

// STREAM.CREATE's body for events.stream: file storage, limits retention,
// the oldest events discarded first.
std::string create_request(const config::Config& config);

// Whether the subject filter `filter` (with * and >) matches every subject
// that `subjects` (also a filter) matches.
bool covers(std::string_view filter, std::string_view subjects);

// An answer of the JetStream API or of a publish to a stream.
struct Reply {
    enum class Kind {
        ok,  // `body` is the answer
        error,  // the API's error: code, err_code, description
        no_responders,  // nobody serves the subject: no JetStream (in that domain)
        garbage,  // not JSON: said in `description`
    } kind = Kind::ok;
    int code = 0;
    int err_code = 0;
    std::string description;
    nlohmann::json body;
};
Reply parse(const nats::Answer& answer);

// JetStream's err_code for a stream that does not exist, and for an
// account without JetStream.
inline constexpr int stream_not_found = 10059;
inline constexpr int not_enabled_for_account = 10039;
inline constexpr int not_enabled = 10076;

// Why the stream in a STREAM.INFO answer cannot hold this node's events, or
// empty when it can.
std::string unfit(const nlohmann::json& info, const config::Config& config);

}  // namespace cim::events::jetstream

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "events/spool.hpp"

// The bytes of events.spool, a sequence of frames:
//
//   magic "cLs\xc5" | kind u32 | body length u32 | CRC32C u32 | body
//
// integers little-endian. The CRC covers kind, length and body, so a torn
// write or a flipped bit anywhere in a frame is detected; the magic tells a
// frame from zeros or a foreign file at a glance, for the report. The first
// frame is a header; then come event and removal frames in the order things
// happened. Reading stops at the first frame that is not whole, intact and
// in place: an append-only log is only ever damaged at its end, and what
// follows damage elsewhere cannot be trusted to be in order.
namespace cim::events::format {

enum class Kind : std::uint32_t {
    header = 1,  // version u32, next seq u64: numbering survives a rewrite that keeps no event
    event = 2,  // seq u64, time ns i64, id length u32, subject length u32, id, subject, payload
    removal = 3,  // seq u64: acknowledged or evicted
};

inline constexpr std::size_t head_bytes = 16;
inline constexpr std::uint32_t version = 1;
// Longer bodies are never written; reading one is damage, not an allocation.
inline constexpr std::uint32_t max_body = 1U << 30;

// CRC-32C (Castagnoli), the one in iSCSI, ext4 and SSE 4.2; `crc` continues an
// earlier one: crc32c(b, crc32c(a)) == crc32c(a + b).
std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0);

// Any frame, intact; the others are this with their kind and body.
void add_frame(std::string& out, std::uint32_t kind, std::string_view body);

std::int64_t event_frame_bytes(const Record& record);
void add_header(std::string& out, std::uint64_t next_seq);
void add_event(std::string& out, const Record& record);
void add_removal(std::string& out, std::uint64_t seq);

struct Head {
    std::uint32_t kind;
    std::uint32_t length;
    std::uint32_t crc;
};

// The head in the first head_bytes of `bytes`, or nullopt without the magic.
std::optional<Head> parse_head(std::string_view bytes);
bool checksum_matches(const Head& head, std::string_view body);

// Bodies of intact frames; nullopt when the lengths inside do not add up.
struct Header {
    std::uint32_t version;
    std::uint64_t next_seq;
};
std::optional<Header> decode_header(std::string_view body);
std::optional<Record> decode_event(std::string_view body);
std::optional<std::uint64_t> decode_removal(std::string_view body);

}  // namespace cim::events::format

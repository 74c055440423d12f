#include "events/spool_format.hpp"

#include <array>
#include <chrono>

namespace cim::events::format {

namespace {

constexpr std::string_view magic = "cLs\xc5";

// Slicing by 8: tables[k][b] is the CRC of byte b followed by k zero bytes,
// so eight bytes take eight lookups and no loop-carried shift per byte
// (about four times the speed of one table; reading a full spool is mostly CRC).
using Tables = std::array<std::array<std::uint32_t, 256>, 8>;
constexpr Tables crc32c_tables()
{
    Tables tables{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t crc = i;
        for (int bit = 0; bit < 8; ++bit)
            crc = (crc >> 1) ^ (0x82F63B78U & (0U - (crc & 1U)));  // the reflected Castagnoli polynomial
        tables[0][i] = crc;
    }
    for (std::size_t k = 1; k < 8; ++k)
        for (std::size_t i = 0; i < 256; ++i)
            tables[k][i] = (tables[k - 1][i] >> 8) ^ tables[0][tables[k - 1][i] & 0xFFU];
    return tables;
}
constexpr Tables tables = crc32c_tables();

template <typename T> void put(std::string& out, T value)
{
    for (std::size_t i = 0; i < sizeof(T); ++i)
        out.push_back(static_cast<char>(static_cast<std::uint64_t>(value) >> (8 * i)));
}

template <typename T> T get(std::string_view bytes, std::size_t at)
{
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        value |= std::uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    return static_cast<T>(value);
}

constexpr std::size_t event_fixed_bytes = 8 + 8 + 4 + 4;

// The part of the head the CRC covers besides the body.
std::string kind_and_length(std::uint32_t kind, std::uint32_t length)
{
    std::string bytes;
    put(bytes, kind);
    put(bytes, length);
    return bytes;
}

}  // namespace

std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc)
{
    const auto byte = [&](std::size_t i) -> std::uint32_t { return static_cast<unsigned char>(bytes[i]); };
    crc = ~crc;
    std::size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        const std::uint32_t low = crc ^ (byte(i) | byte(i + 1) << 8 | byte(i + 2) << 16 | byte(i + 3) << 24);
        crc = tables[7][low & 0xFFU] ^ tables[6][(low >> 8) & 0xFFU] ^ tables[5][(low >> 16) & 0xFFU] ^
            tables[4][low >> 24] ^ tables[3][byte(i + 4)] ^ tables[2][byte(i + 5)] ^ tables[1][byte(i + 6)] ^
            tables[0][byte(i + 7)];
    }
    for (; i < bytes.size(); ++i)
        crc = tables[0][(crc ^ byte(i)) & 0xFFU] ^ (crc >> 8);
    return ~crc;
}

void add_frame(std::string& out, std::uint32_t kind, std::string_view body)
{
    const std::string covered = kind_and_length(kind, static_cast<std::uint32_t>(body.size()));
    out += magic;
    out += covered;
    put(out, crc32c(body, crc32c(covered)));
    out += body;
}

std::int64_t event_frame_bytes(const Record& record)
{
    return static_cast<std::int64_t>(
        head_bytes + event_fixed_bytes + record.event_id.size() + record.subject.size() + record.payload.size());
}

void add_header(std::string& out, std::uint64_t next_seq)
{
    std::string body;
    put(body, version);
    put(body, next_seq);
    add_frame(out, static_cast<std::uint32_t>(Kind::header), body);
}

void add_event(std::string& out, const Record& record)
{
    std::string body;
    body.reserve(static_cast<std::size_t>(event_frame_bytes(record)) - head_bytes);
    put(body, record.seq);
    put(body, std::chrono::duration_cast<std::chrono::nanoseconds>(record.time.time_since_epoch()).count());
    put(body, static_cast<std::uint32_t>(record.event_id.size()));
    put(body, static_cast<std::uint32_t>(record.subject.size()));
    body += record.event_id;
    body += record.subject;
    body += record.payload;
    add_frame(out, static_cast<std::uint32_t>(Kind::event), body);
}

void add_removal(std::string& out, std::uint64_t seq)
{
    std::string body;
    put(body, seq);
    add_frame(out, static_cast<std::uint32_t>(Kind::removal), body);
}

std::optional<Head> parse_head(std::string_view bytes)
{
    if (bytes.size() < head_bytes || bytes.substr(0, magic.size()) != magic)
        return std::nullopt;
    return Head{get<std::uint32_t>(bytes, 4), get<std::uint32_t>(bytes, 8), get<std::uint32_t>(bytes, 12)};
}

bool checksum_matches(const Head& head, std::string_view body)
{
    return crc32c(body, crc32c(kind_and_length(head.kind, head.length))) == head.crc;
}

std::optional<Header> decode_header(std::string_view body)
{
    if (body.size() != 4 + 8)
        return std::nullopt;
    return Header{get<std::uint32_t>(body, 0), get<std::uint64_t>(body, 4)};
}

std::optional<Record> decode_event(std::string_view body)
{
    if (body.size() < event_fixed_bytes)
        return std::nullopt;
    const auto id_length = get<std::uint32_t>(body, 16);
    const auto subject_length = get<std::uint32_t>(body, 20);
    if (std::uint64_t{id_length} + subject_length > body.size() - event_fixed_bytes)
        return std::nullopt;
    Record record;
    record.seq = get<std::uint64_t>(body, 0);
    record.time = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::nanoseconds(get<std::int64_t>(body, 8))));
    body.remove_prefix(event_fixed_bytes);
    record.event_id = body.substr(0, id_length);
    record.subject = body.substr(id_length, subject_length);
    record.payload = body.substr(id_length + subject_length);
    return record;
}

std::optional<std::uint64_t> decode_removal(std::string_view body)
{
    if (body.size() != 8)
        return std::nullopt;
    return get<std::uint64_t>(body, 0);
}

}  // namespace cim::events::format

#include "util/ids.hpp"

#include <sys/random.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <mutex>

namespace cim::util {

void append_rfc3339(std::string& out, std::chrono::system_clock::time_point time)
{
    // Calendar arithmetic, not gmtime_r and snprintf: every health reply
    // stamps its time, and those take a lock and parse a format each call.
    using namespace std::chrono;
    const auto ms = floor<milliseconds>(time);
    const auto day = floor<days>(ms);
    const year_month_day date(day);
    const hh_mm_ss clock(ms - day);
    char text[] = "0000-00-00T00:00:00.000Z";
    auto put = [&text](std::size_t at, unsigned value, std::size_t digits) {
        for (std::size_t i = at + digits; i-- > at; value /= 10)
            text[i] = static_cast<char>('0' + value % 10);
    };
    put(0, static_cast<unsigned>(static_cast<int>(date.year())), 4);
    put(5, static_cast<unsigned>(date.month()), 2);
    put(8, static_cast<unsigned>(date.day()), 2);
    put(11, static_cast<unsigned>(clock.hours().count()), 2);
    put(14, static_cast<unsigned>(clock.minutes().count()), 2);
    put(17, static_cast<unsigned>(clock.seconds().count()), 2);
    put(20, static_cast<unsigned>(clock.subseconds().count()), 3);
    out.append(text, sizeof text - 1);
}

std::string rfc3339(std::chrono::system_clock::time_point time)
{
    std::string out;
    append_rfc3339(out, time);
    return out;
}

std::string rfc3339_or_empty(std::chrono::system_clock::time_point time)
{
    return time == std::chrono::system_clock::time_point{} ? std::string() : rfc3339(time);
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text)
{
    using namespace std::chrono;
    // "2026-11-23T22:45:05.123Z": digits where rfc3339() writes them.
    constexpr std::string_view shape = "0000-00-00T00:00:00.000Z";
    if (text.size() != shape.size())
        return std::nullopt;
    for (std::size_t i = 0; i < shape.size(); ++i)
        if (shape[i] == '0' ? text[i] < '0' || text[i] > '9' : text[i] != shape[i])
            return std::nullopt;
    auto number = [&](std::size_t at, std::size_t digits) {
        int value = 0;
        for (std::size_t i = at; i < at + digits; ++i)
            value = value * 10 + (text[i] - '0');
        return value;
    };
    const year_month_day date{
        year{number(0, 4)}, month{static_cast<unsigned>(number(5, 2))}, day{static_cast<unsigned>(number(8, 2))}};
    const int hour = number(11, 2), minute = number(14, 2), second = number(17, 2);
    if (!date.ok() || hour > 23 || minute > 59 || second > 59)
        return std::nullopt;
    return sys_days{date} + hours{hour} + minutes{minute} + seconds{second} + milliseconds{number(20, 3)};
}

std::string uuid_v7()
{
    std::array<std::uint8_t, 16> bytes{};
    // getrandom() on the urandom pool does not block once the pool is ready,
    // which it is long before a network service starts.
    [[maybe_unused]] ssize_t n = getrandom(bytes.data(), bytes.size(), 0);
    auto ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    // RFC 9562 method 1: a 12-bit counter in rand_a keeps ids made within
    // the same millisecond in creation order.
    std::uint16_t counter = 0;
    {
        static std::mutex mutex;
        static std::uint64_t last_ms = 0;
        static std::uint16_t last_counter = 0;
        std::lock_guard lock(mutex);
        if (ms <= last_ms) {
            ms = last_ms;
            if (++last_counter > 0xfff) {  // 4096 ids in one millisecond: borrow the next one
                ms = ++last_ms;
                last_counter = 0;
            }
        } else {
            last_ms = ms;
            last_counter = static_cast<std::uint16_t>(bytes[7] & 0x7f);  // random start, room to count
        }
        counter = last_counter;
    }
    for (int i = 0; i < 6; ++i)
        bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
    bytes[6] = static_cast<std::uint8_t>(0x70 | (counter >> 8));  // version 7, counter high bits
    bytes[7] = static_cast<std::uint8_t>(counter & 0xff);
    bytes[8] = static_cast<std::uint8_t>(0x80 | (bytes[8] & 0x3f));  // RFC 9562 variant
    char out[37];
    std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
        bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11],
        bytes[12], bytes[13], bytes[14], bytes[15]);
    return out;
}

}  // namespace cim::util

#include <doctest/doctest.h>

#include "config/duration.hpp"

using cim::config::Duration;
using cim::config::format_duration;
using cim::config::parse_duration;

TEST_CASE("durations parse in every unit")
{
    CHECK(parse_duration("500ms") == Duration{500});
    CHECK(parse_duration("5s") == Duration{5000});
    CHECK(parse_duration("2m") == Duration{120'000});
    CHECK(parse_duration("1h") == Duration{3'600'000});
    CHECK(parse_duration("0s") == Duration{0});
}

TEST_CASE("durations reject everything else")
{
    for (const char* bad : {"", "5", "s", "soon", "5 s", "-5s", "5S", "1.5s", "5sec", "1m30s", "ms", "+5s",
             "99999999999999999999", "99999999999999999999x"})
        CHECK_MESSAGE(!parse_duration(bad), bad);
}

TEST_CASE("a duration too long to count in milliseconds is the longest one, not no duration")
{
    CHECK(parse_duration("99999999999999999999s") == Duration::max());
    CHECK(parse_duration("9223372036854775807h") == Duration::max());
    CHECK(parse_duration("9223372036854775807ms") == Duration{9223372036854775807});
}

TEST_CASE("durations format to their shortest exact spelling")
{
    CHECK(format_duration(Duration{500}) == "500ms");
    CHECK(format_duration(Duration{1500}) == "1500ms");
    CHECK(format_duration(Duration{5000}) == "5s");
    CHECK(format_duration(Duration{120'000}) == "2m");
    CHECK(format_duration(Duration{3'600'000}) == "1h");
    CHECK(format_duration(Duration{0}) == "0ms");
    for (const char* text : {"10ms", "100ms", "5s", "90s", "2m", "1h"})
        CHECK(format_duration(*parse_duration(text)) == text);
}

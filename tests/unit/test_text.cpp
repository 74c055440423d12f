#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "util/text.hpp"

using namespace cim::util;

TEST_CASE("well-formed UTF-8 is text, byte for byte as Unicode Table 3-7 allows")
{
    for (const char* good :
        {"ascii", "\xc3\xa9", "\xe2\x82\xac", "\xed\x9f\xbf" /* U+D7FF */, "\xee\x80\x80" /* U+E000 */,
            "\xf0\x90\x80\x80" /* U+10000 */, "\xf4\x8f\xbf\xbf" /* U+10FFFF */, "\xef\xbb\xbf" /* BOM */})
        CHECK_MESSAGE(!find_non_text(good), good);
}

TEST_CASE("ill-formed UTF-8 is not text")
{
    const char* bad[] = {
        "\x80",  // a lone continuation byte
        "\xc0\x80",  // overlong NUL
        "\xc1\xbf",  // overlong
        "\xe0\x9f\xbf",  // overlong: E0 needs A0..BF next
        "\xed\xa0\x80",  // a surrogate (U+D800)
        "\xf0\x8f\xbf\xbf",  // overlong: F0 needs 90..BF next
        "\xf4\x90\x80\x80",  // above U+10FFFF: F4 needs 80..8F next
        "\xf5\x80\x80\x80",  // F5..FF never lead
        "\xff",
        "\xe2\x82",  // cut short
        "\xe2\x28\xa1",  // a continuation byte missing
    };
    for (const char* text : bad)
        CHECK_MESSAGE(find_non_text(std::string("ok ") + text) == "invalid UTF-8 at offset 3", text);
}

TEST_CASE("to_valid_utf8 replaces each byte of an ill-formed sequence with U+FFFD")
{
    CHECK(to_valid_utf8("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");
    CHECK(to_valid_utf8("a\xc0\x80z") == "a\xef\xbf\xbd\xef\xbf\xbdz");
    CHECK(to_valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    CHECK(to_valid_utf8("end \xe2\x82") == "end \xef\xbf\xbd\xef\xbf\xbd");
    CHECK_FALSE(find_non_text(to_valid_utf8("\xf5\xff\x80\xc3")));
}

TEST_CASE("quote cuts long text at a character boundary")
{
    const std::string a63(63, 'a');
    CHECK(quote(a63 + "\xc3\xa9" + "tail") == "\"" + a63 + "...\"");  // the 2-byte character would end at 65
    CHECK(quote(a63 + "b") == "\"" + a63 + "b\"");
    CHECK(quote("tab\there \"q\"") == R"("tab\u0009here \"q\"")");
    CHECK(quote("bad \xc0") == "\"bad \xef\xbf\xbd\"");
    CHECK_FALSE(find_non_text(quote(std::string(62, 'x') + "\xe2\x82\xac\xe2\x82\xac")));
}

TEST_CASE("quote_unless_plain: plain names as written, anything else quoted")
{
    CHECK(quote_unless_plain("reconnect_wait-2", "_-") == "reconnect_wait-2");
    CHECK(quote_unless_plain("/run/secrets/nats.creds", "/._-") == "/run/secrets/nats.creds");
    CHECK(quote_unless_plain("a.b", "_-") == R"("a.b")");  // would read as a key path
    CHECK(quote_unless_plain("\x1b[31mred\a", "_-") == R"("\u001b[31mred\u0007")");
    CHECK(quote_unless_plain("x\nc.yaml:1:1: fake", "_-") == R"("x\u000ac.yaml:1:1: fake")");
    CHECK(quote_unless_plain("n\xc5\x93ud", "_-") == "\"n\xc5\x93ud\"");
    CHECK(quote_unless_plain("", "_-") == R"("")");
}

TEST_CASE("lists split and joined, node ids told apart")
{
    CHECK(split("a,,b", ',') == std::vector<std::string>{"a", "", "b"});
    CHECK(split("", ',') == std::vector<std::string>{""});
    CHECK(split("a,", ',') == std::vector<std::string>{"a", ""});
    CHECK(join({"a", "b", "c"}, ", ") == "a, b, c");
    CHECK(join({}, ", ").empty());
    CHECK(is_node_id("leaf_01-A"));
    for (const char* bad : {"", "leaf.01", "leaf 01", "*", ">", "l\xc3\xa9" "af"})
        CHECK_MESSAGE(!is_node_id(bad), bad);
}

TEST_CASE("counts say one thing in the singular")
{
    CHECK(count_words(0, "event") == "0 events");
    CHECK(count_words(1, "event") == "1 event");
    CHECK(count_words(2, "event") == "2 events");
}

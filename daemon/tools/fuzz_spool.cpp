// libFuzzer target: any bytes as events.spool must open (damage is never
// fatal, only a later format is refused), read back in seq order, and be
// rewritten into a file that reads back whole and the same.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "events/spool.hpp"
#include "events/spool_format.hpp"

namespace {

// tmpfs when there is one: every open fsyncs its rewrite.
const std::filesystem::path& directory()
{
    static const std::filesystem::path path = [] {
        const std::filesystem::path shm = "/dev/shm";
        std::string name =
            ((std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path()) / "fuzz-spool.XXXXXX")
                .string();
        if (!mkdtemp(name.data()))
            std::abort();
        return std::filesystem::path(name);
    }();
    static const int cleanup = std::atexit([] { std::filesystem::remove_all(directory()); });
    (void)cleanup;
    return path;
}

struct Read {
    std::vector<cim::events::Record> pending;
    std::uint64_t next_seq = 0;  // 0: refused
    bool whole = false;  // nothing cut, nothing dropped
};

Read open_and_check()
{
    auto opened = cim::events::Spool::open(directory(), 1 << 16);
    if (auto* error = std::get_if<std::string>(&opened)) {
        if (error->find(": is format ") == std::string::npos)
            __builtin_trap();
        return {};
    }
    const auto& spool = std::get<cim::events::Spool>(opened);
    const auto& recovery = spool.recovery();
    if (!spool.durable() || recovery.records != spool.pending().size() || spool.bytes() > spool.max_bytes())
        __builtin_trap();
    std::uint64_t at_least = 0;
    for (const auto& record : spool.pending()) {
        if (record.seq < at_least || record.seq >= spool.next_seq())
            __builtin_trap();
        at_least = record.seq + 1;
    }
    (void)recovery.str();
    return {{spool.pending().begin(), spool.pending().end()}, spool.next_seq(),
        !recovery.damaged() && recovery.dropped.empty()};
}

// Checksums stop random bytes at the first frame, so an input that starts
// with byte 1 (a spool file starts with 'c') is frames with valid checksums,
// [kind][length][body]..., to reach what lies beyond: order, removals,
// headers, eviction.
std::string spool_file(std::string_view input)
{
    if (input.empty() || input.front() != 1)
        return std::string(input);
    input.remove_prefix(1);
    std::string file;
    while (input.size() >= 2) {
        const auto kind = static_cast<std::uint8_t>(input[0]);
        const std::size_t length = std::min<std::size_t>(static_cast<std::uint8_t>(input[1]), input.size() - 2);
        cim::events::format::add_frame(file, kind, input.substr(2, length));
        input.remove_prefix(2 + length);
    }
    return file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string file = spool_file(std::string_view(reinterpret_cast<const char*>(data), size));
    std::ofstream(directory() / "events.spool", std::ios::binary | std::ios::trunc)
        .write(file.data(), static_cast<std::streamsize>(file.size()));
    const Read first = open_and_check();
    if (first.next_seq == 0)
        return 0;  // refused, left as it was
    const Read again = open_and_check();
    if (!again.whole || again.pending != first.pending || again.next_seq != first.next_seq)
        __builtin_trap();
    return 0;
}

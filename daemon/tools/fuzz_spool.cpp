// libFuzzer target: any bytes as events.spool must open (damage is never
// fatal, only a later format is refused), read back in seq order, and be
// rewritten into a file that reads back whole and the same.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "events/spool.hpp"

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::ofstream(directory() / "events.spool", std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    const Read first = open_and_check();
    if (first.next_seq == 0)
        return 0;  // refused, left as it was
    const Read again = open_and_check();
    if (!again.whole || again.pending != first.pending || again.next_seq != first.next_seq)
        __builtin_trap();
    return 0;
}

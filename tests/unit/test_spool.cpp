#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "event_loop.hpp"
#include "events/spool.hpp"
#include "events/spool_format.hpp"
#include "events/syncer.hpp"

using namespace cim::events;
namespace fs = std::filesystem;

namespace {

// A fresh directory under $TMPDIR, removed with everything in it. `in_memory`
// puts it on tmpfs when there is one, for loops that open a spool a thousand
// times: each open fsyncs, which a slow disk makes a minute.
struct TempDir {
    fs::path path;
    explicit TempDir(bool in_memory = false)
    {
        const fs::path base = in_memory && fs::is_directory("/dev/shm") ? "/dev/shm" : fs::temp_directory_path();
        std::string name = (base / "cim-leaf-spool.XXXXXX").string();
        REQUIRE(mkdtemp(name.data()) != nullptr);
        path = name;
    }
    ~TempDir() { fs::remove_all(path); }
    fs::path spool_file() const { return path / "events.spool"; }
};

Record record(std::uint64_t seq, std::size_t payload_bytes = 0)
{
    std::string payload = R"({"seq":)" + std::to_string(seq) + "}";
    payload.resize(std::max(payload.size(), payload_bytes), ' ');
    return {seq, "0190f0e2-7c3a-7000-8000-" + std::to_string(100000000000 + seq), "cim.leaf.n1.events.ready", payload,
        std::chrono::system_clock::time_point(std::chrono::nanoseconds(1'700'000'000'123'456'789 + seq))};
}

ino_t inode_of(const fs::path& path)
{
    struct stat st { };
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

std::vector<std::uint64_t> seqs(const Spool& spool)
{
    std::vector<std::uint64_t> out;
    for (const auto& r : spool.pending())
        out.push_back(r.seq);
    return out;
}

Spool open_ok(const fs::path& directory, std::int64_t max_bytes = 1 << 20)
{
    auto opened = Spool::open(directory, max_bytes);
    if (auto* error = std::get_if<std::string>(&opened))
        FAIL("open failed: " << *error);
    return std::get<Spool>(std::move(opened));
}

std::string open_error(const fs::path& directory, std::int64_t max_bytes = 1 << 20)
{
    auto opened = Spool::open(directory, max_bytes);
    const auto* error = std::get_if<std::string>(&opened);
    return error ? *error : "(opened)";
}

std::string read_file(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const fs::path& path, const std::string& bytes)
{
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::int64_t frame_bytes(const Record& r)
{
    return format::event_frame_bytes(r);
}

constexpr std::int64_t header_frame_bytes = 16 + 12;

// A spool file built through the API, with what it holds after each frame.
struct History {
    struct State {
        std::int64_t end;  // of the file after this step
        std::vector<std::uint64_t> pending;
        std::uint64_t next_seq;
    };
    std::vector<State> states;
    std::string bytes;

    // The last state whose file ends at or before `offset`.
    const State& at(std::int64_t offset) const
    {
        const State* found = &states.front();
        for (const auto& state : states)
            if (state.end <= offset)
                found = &state;
        return *found;
    }
};

History build_history(const TempDir& dir)
{
    History history;
    history.states.push_back({0, {}, 1});  // an empty file reads as a new spool
    Spool spool = open_ok(dir.path);
    const auto note = [&] { history.states.push_back({spool.file_bytes(), seqs(spool), spool.next_seq()}); };
    note();
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
        spool.append(record(seq));
        note();
    }
    spool.acknowledge(2);
    note();
    spool.append(record(4));
    note();
    spool.acknowledge(1);
    note();
    history.bytes = read_file(dir.spool_file());
    REQUIRE(static_cast<std::int64_t>(history.bytes.size()) == history.states.back().end);
    return history;
}

// Opens `bytes` as a spool file and checks it reads as `expected`, damaged
// from `damage_at` (or whole when nullopt); the rewritten file reads back
// whole and the same.
void check_recovers(
    const TempDir& dir, const std::string& bytes, const History::State& expected, std::optional<std::int64_t> damage_at)
{
    write_file(dir.spool_file(), bytes);
    {
        Spool spool = open_ok(dir.path);
        CHECK(seqs(spool) == expected.pending);
        CHECK(spool.next_seq() == expected.next_seq);
        CHECK(spool.durable());
        CHECK(spool.recovery().records == expected.pending.size());
        CHECK(spool.recovery().damaged() == damage_at.has_value());
        if (damage_at) {
            CHECK(spool.recovery().offset == *damage_at);
            CHECK(spool.recovery().discarded_bytes == static_cast<std::int64_t>(bytes.size()) - *damage_at);
        }
    }
    Spool again = open_ok(dir.path);
    CHECK_FALSE(again.recovery().damaged());
    CHECK(seqs(again) == expected.pending);
    CHECK(again.next_seq() == expected.next_seq);
}

}  // namespace

TEST_CASE("crc32c matches the published check value and continues")
{
    CHECK(format::crc32c("123456789") == 0xE3069283U);
    CHECK(format::crc32c("") == 0U);
    CHECK(format::crc32c("56789", format::crc32c("1234")) == 0xE3069283U);
    CHECK(format::crc32c(std::string(32, '\0')) == 0x8A9136AAU);  // RFC 3720 B.4
    CHECK(format::crc32c(std::string(32, '\xff')) == 0x62A8AB43U);
    std::string ascending;
    for (int i = 0; i < 32; ++i)
        ascending.push_back(static_cast<char>(i));
    CHECK(format::crc32c(ascending) == 0x46DD794EU);
    // Every split of a longer text, through the eight-byte loop and the tail.
    const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
    for (std::size_t cut = 0; cut <= text.size(); ++cut)
        CHECK(format::crc32c(text.substr(cut), format::crc32c(text.substr(0, cut))) == format::crc32c(text));
}

TEST_CASE("a new spool is an empty, durable file of mode 0600")
{
    TempDir dir;
    Spool spool = open_ok(dir.path);
    CHECK(spool.pending().empty());
    CHECK(spool.next_seq() == 1);
    CHECK(spool.bytes() == 0);
    CHECK(spool.durable());
    CHECK_FALSE(spool.recovery().damaged());
    struct stat st { };
    REQUIRE(stat(dir.spool_file().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_size == header_frame_bytes);
}

TEST_CASE("events are read back byte for byte, in order, after reopening")
{
    TempDir dir;
    std::vector<Record> written = {record(1), record(2, 3000), record(3)};
    written[1].payload += std::string("\0\xff\n\"\xc3\xa9", 6);  // any bytes survive
    {
        Spool spool = open_ok(dir.path);
        for (const auto& r : written)
            CHECK(spool.append(r).empty());
        CHECK(spool.bytes() == frame_bytes(written[0]) + frame_bytes(written[1]) + frame_bytes(written[2]));
    }
    Spool spool = open_ok(dir.path);
    REQUIRE(spool.pending().size() == 3);
    for (std::size_t i = 0; i < written.size(); ++i)
        CHECK(spool.pending()[i] == written[i]);
    CHECK(spool.next_seq() == 4);
    CHECK(spool.recovery().records == 3);
    CHECK_FALSE(spool.recovery().damaged());
    CHECK(spool.recovery().str() == "kept 3 events");
}

TEST_CASE("an event may be sent once a sync covers it; one sync covers every event written before it")
{
    TempDir dir;
    Spool spool = open_ok(dir.path);
    CHECK_FALSE(spool.unsynced());
    spool.append(record(1));
    spool.append(record(2));
    CHECK_FALSE(spool.may_send(1));
    const auto first = spool.unsynced();
    REQUIRE(first);
    CHECK(first->seq == 2);
    spool.append(record(3));  // written while the sync of 1 and 2 runs
    spool.synced(*first, 0);
    CHECK(spool.may_send(2));
    CHECK_FALSE(spool.may_send(3));
    CHECK(spool.unsynced()->seq == 3);
    spool.sync();
    CHECK(spool.may_send(3));
    CHECK_FALSE(spool.unsynced());
    CHECK(spool.durable());
}

TEST_CASE("a failed sync makes the spool not durable, its events sendable, and the next write rewrites the file")
{
    TempDir dir;
    std::optional<Spool> opened(open_ok(dir.path));
    Spool& spool = *opened;
    spool.append(record(1));
    const auto what = spool.unsynced();
    REQUIRE(what);
    spool.synced(*what, EIO);
    CHECK_FALSE(spool.durable());
    CHECK(spool.error() == dir.spool_file().string() + ": cannot fsync: Input/output error");
    CHECK(spool.may_send(1));  // sent rather than held: health says the spool is not durable
    CHECK_FALSE(spool.unsynced());
    spool.synced(*what, 0);  // a later success proves nothing about the pages the kernel dropped
    CHECK_FALSE(spool.durable());

    const ino_t before = inode_of(dir.spool_file());
    spool.append(record(2));  // the whole file anew, synced
    CHECK(spool.durable());
    CHECK(inode_of(dir.spool_file()) != before);
    CHECK(spool.may_send(2));
    CHECK_FALSE(spool.unsynced());
    opened.reset();
    CHECK(seqs(open_ok(dir.path)) == std::vector<std::uint64_t>{1, 2});
}

TEST_CASE("a sync of a file a compaction has replaced is stale: neither its success nor its failure counts")
{
    TempDir dir;
    Spool spool = open_ok(dir.path);
    spool.append(record(1));
    const auto old_file = spool.unsynced();
    REQUIRE(old_file);
    // Enough acknowledged events to make a rewrite pay, which syncs all it keeps.
    const ino_t before = inode_of(dir.spool_file());
    for (std::uint64_t seq = 2; inode_of(dir.spool_file()) == before; ++seq) {
        REQUIRE(seq < 1000);
        spool.append(record(seq, 1000));
        spool.acknowledge(seq);
    }
    CHECK(spool.may_send(1));
    CHECK_FALSE(spool.unsynced());
    spool.synced(*old_file, EIO);
    CHECK(spool.durable());
    spool.append(record(spool.next_seq()));
    const auto current = spool.unsynced();
    REQUIRE(current);
    spool.synced(Spool::Unsynced{old_file->file, current->seq}, 0);
    CHECK_FALSE(spool.may_send(current->seq));
}

TEST_CASE("the Syncer syncs on a thread of its own, reports on the loop, and a burst shares fdatasyncs")
{
    TempDir dir;
    Spool spool = open_ok(dir.path);
    cim::EventLoop loop;
    int syncs = 0;
    bool on_loop_thread = true;
    const auto loop_thread = std::this_thread::get_id();
    cim::events::Syncer syncer(loop, [&](const Spool::Unsynced& what, int error) {
        on_loop_thread = on_loop_thread && std::this_thread::get_id() == loop_thread;
        spool.synced(what, error);
        ++syncs;
    });
    constexpr std::uint64_t events = 1000;
    for (std::uint64_t seq = 1; seq <= events; ++seq) {
        spool.append(record(seq));
        syncer.request(*spool.unsynced());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK_FALSE(spool.may_send(1));  // done, but told only when the loop runs
    for (int i = 0; i < 500 && !spool.may_send(events); ++i)
        loop.run_for(std::chrono::milliseconds(10));
    CHECK(spool.may_send(events));
    CHECK(spool.durable());
    CHECK(on_loop_thread);
    CHECK(syncs >= 1);
    CHECK(syncs < static_cast<int>(events) / 2);

    // stop() does what was asked and returns it, reported to nobody.
    const int reported = syncs;
    spool.append(record(events + 1));
    syncer.request(*spool.unsynced());
    const auto finished = syncer.stop();
    CHECK(syncs == reported);
    REQUIRE(finished.size() == 1);
    CHECK(finished.front().first.seq == events + 1);
    CHECK(finished.front().second == 0);
    spool.synced(finished.front().first, finished.front().second);
    CHECK(spool.may_send(events + 1));
}

TEST_CASE("a spool in memory sends at once and has nothing to sync")
{
    Spool spool = Spool::in_memory(1 << 16, "no directory");
    spool.append(record(1));
    CHECK(spool.may_send(1));
    CHECK_FALSE(spool.unsynced());
}

TEST_CASE("a spool larger than a read window is read back whole, frames across its edges included")
{
    TempDir dir;
    constexpr std::int64_t max_bytes = 8 << 20;
    std::vector<Record> pending;
    {
        Spool spool = open_ok(dir.path, max_bytes);
        for (std::uint64_t seq = 1; seq <= 150; ++seq) {
            // Sizes that do not divide 64 KiB, and one frame larger than it.
            const Record r = record(seq, seq == 75 ? 200'000 : 997 * (seq % 9 + 1));
            REQUIRE(spool.append(r).empty());
            if (seq % 4 == 0)
                spool.acknowledge(seq);
            else
                pending.push_back(r);
        }
        REQUIRE(fs::file_size(dir.spool_file()) > 4 * 64 * 1024);
    }
    Spool spool = open_ok(dir.path, max_bytes);
    CHECK_FALSE(spool.recovery().damaged());
    REQUIRE(spool.pending().size() == pending.size());
    for (std::size_t i = 0; i < pending.size(); ++i)
        CHECK(spool.pending()[i] == pending[i]);
    CHECK(spool.next_seq() == 151);
}

TEST_CASE("acknowledgements in any order; unknown and repeated ones are ignored")
{
    TempDir dir;
    {
        Spool spool = open_ok(dir.path);
        for (std::uint64_t seq = 1; seq <= 5; ++seq)
            spool.append(record(seq));
        spool.acknowledge(3);
        spool.acknowledge(1);
        spool.acknowledge(3);
        spool.acknowledge(99);
        spool.acknowledge(0);
        CHECK(seqs(spool) == std::vector<std::uint64_t>{2, 4, 5});
        CHECK(spool.bytes() == 3 * frame_bytes(record(2)));
        CHECK(spool.next_seq() == 6);
    }
    Spool spool = open_ok(dir.path);
    CHECK(seqs(spool) == std::vector<std::uint64_t>{2, 4, 5});
    CHECK(spool.next_seq() == 6);
}

TEST_CASE("numbering continues across reopen after everything was acknowledged and compacted")
{
    TempDir dir;
    {
        Spool spool = open_ok(dir.path);
        for (std::uint64_t seq = 1; seq <= 200; ++seq) {
            spool.append(record(seq, 1000));
            spool.acknowledge(seq);
        }
        // 200 KB went through; compaction keeps the file near the 64 KiB threshold.
        CHECK(spool.file_bytes() < 70 * 1024);
        CHECK(spool.pending().empty());
    }
    const ino_t inode = inode_of(dir.spool_file());
    const auto size = fs::file_size(dir.spool_file());
    {
        Spool spool = open_ok(dir.path);
        CHECK(spool.pending().empty());
        CHECK(spool.next_seq() == 201);
        // A clean spool is not rewritten at start (no disk sync before READY=1).
        CHECK(inode_of(dir.spool_file()) == inode);
        CHECK(fs::file_size(dir.spool_file()) == size);
        spool.append(record(201));
    }
    Spool spool = open_ok(dir.path);
    CHECK(seqs(spool) == std::vector<std::uint64_t>{201});
    CHECK(spool.next_seq() == 202);
}

TEST_CASE("compaction keeps exactly the pending events")
{
    TempDir dir;
    const std::vector<std::uint64_t> kept = {5, 77, 150};
    {
        Spool spool = open_ok(dir.path);
        for (std::uint64_t seq = 1; seq <= 200; ++seq)
            spool.append(record(seq, 1000));
        const std::int64_t full = spool.file_bytes();
        for (std::uint64_t seq = 200; seq >= 1; --seq)  // newest first: the unusual order
            if (std::find(kept.begin(), kept.end(), seq) == kept.end())
                spool.acknowledge(seq);
        CHECK(spool.file_bytes() < full / 2);  // it was rewritten
        CHECK(seqs(spool) == kept);
        CHECK(spool.bytes() == 3 * frame_bytes(record(1, 1000)));
    }
    Spool spool = open_ok(dir.path);
    CHECK(seqs(spool) == kept);
    CHECK(spool.pending()[1] == record(77, 1000));
    CHECK(spool.next_seq() == 201);
}

TEST_CASE("a start rewrites a spool only when it must: dropped records, a damaged tail, or worth compacting")
{
    TempDir dir;
    {
        Spool spool = open_ok(dir.path);
        for (std::uint64_t seq = 1; seq <= 10; ++seq)
            spool.append(record(seq, 1000));
    }
    const ino_t clean = inode_of(dir.spool_file());
    {
        Spool spool = open_ok(dir.path);
        CHECK(inode_of(dir.spool_file()) == clean);  // clean: appended to as it is
    }
    {
        std::ofstream(dir.spool_file(), std::ios::app) << "torn";
    }
    const ino_t torn = inode_of(dir.spool_file());
    {
        Spool spool = open_ok(dir.path);
        CHECK(seqs(spool).size() == 10);
        CHECK(inode_of(dir.spool_file()) != torn);  // the damaged tail is cut by a rewrite
        CHECK(static_cast<std::int64_t>(fs::file_size(dir.spool_file())) == header_frame_bytes + spool.bytes());
    }
    const ino_t whole = inode_of(dir.spool_file());
    {
        auto opened = Spool::open(dir.path, 3 * frame_bytes(record(1, 1000)));  // a smaller spool_bytes
        REQUIRE(std::holds_alternative<Spool>(opened));
        CHECK(std::get<Spool>(opened).recovery().dropped.count == 7);
        CHECK(inode_of(dir.spool_file()) != whole);
        CHECK(static_cast<std::int64_t>(fs::file_size(dir.spool_file())) ==
            header_frame_bytes + std::get<Spool>(opened).bytes());
    }
}

TEST_CASE("a file cut at every byte offset recovers the whole frames before the cut")
{
    TempDir source;
    const History history = build_history(source);
    TempDir dir(true);
    for (std::int64_t cut = 0; cut <= static_cast<std::int64_t>(history.bytes.size()); ++cut) {
        CAPTURE(cut);
        const auto& expected = history.at(cut);
        const bool whole = expected.end == cut;
        check_recovers(dir, history.bytes.substr(0, static_cast<std::size_t>(cut)), expected,
            whole ? std::nullopt : std::optional(expected.end));
    }
}

TEST_CASE("a flipped byte anywhere recovers the frames before the one it is in")
{
    TempDir source;
    const History history = build_history(source);
    TempDir dir(true);
    for (std::size_t at = 0; at < history.bytes.size(); ++at) {
        CAPTURE(at);
        std::string bytes = history.bytes;
        bytes[at] = static_cast<char>(bytes[at] ^ 0xff);
        // The state before the frame holding `at`: the last one ending at or before it.
        const auto& expected = history.at(static_cast<std::int64_t>(at));
        check_recovers(dir, bytes, expected, expected.end);
    }
}

TEST_CASE("recovery says where and why")
{
    TempDir dir;
    std::string bytes;
    {
        Spool spool = open_ok(dir.path);
        spool.append(record(1));
        spool.append(record(2));
        bytes = read_file(dir.spool_file());
    }
    const auto second = static_cast<std::size_t>(header_frame_bytes + frame_bytes(record(1)));
    SUBCASE("torn")
    {
        write_file(dir.spool_file(), bytes.substr(0, bytes.size() - 3));
        const Spool spool = open_ok(dir.path);
        CHECK(spool.recovery().str() ==
            "kept 1 event; cut " + std::to_string(bytes.size() - 3 - second) + " bytes at offset " +
                std::to_string(second) + ": a frame of " + std::to_string(frame_bytes(record(2))) + " bytes cut short");
    }
    SUBCASE("flipped")
    {
        bytes[second + 30] ^= 1;
        write_file(dir.spool_file(), bytes);
        const Spool spool = open_ok(dir.path);
        CHECK(spool.recovery().reason == "checksum mismatch");
    }
    SUBCASE("zeros, as a file system leaves after losing a write")
    {
        std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(second), bytes.end(), '\0');
        write_file(dir.spool_file(), bytes);
        const Spool spool = open_ok(dir.path);
        CHECK(spool.recovery().reason == "no frame marker");
        CHECK(seqs(spool) == std::vector<std::uint64_t>{1});
    }
    SUBCASE("intact frames that make no sense where they are")
    {
        std::string file;
        format::add_event(file, record(1));
        write_file(dir.spool_file(), file);
        CHECK(open_ok(dir.path).recovery().reason == "no header (seq numbering starts again at 1)");

        file.clear();
        format::add_header(file, 1);
        format::add_event(file, record(3));
        const auto after_3 = static_cast<std::int64_t>(file.size());
        format::add_event(file, record(2));
        write_file(dir.spool_file(), file);
        {
            const Spool spool = open_ok(dir.path);
            CHECK(spool.recovery().reason == "event seq 2 after 3");
            CHECK(spool.recovery().offset == after_3);
            CHECK(seqs(spool) == std::vector<std::uint64_t>{3});
        }

        file.resize(static_cast<std::size_t>(after_3));
        format::add_header(file, 9);
        write_file(dir.spool_file(), file);
        {
            const Spool spool = open_ok(dir.path);
            CHECK(spool.recovery().reason == "a second header");
            CHECK(spool.next_seq() == 4);
        }
    }
    SUBCASE("not a spool at all")
    {
        write_file(dir.spool_file(), "this is not a spool file\n");
        const Spool spool = open_ok(dir.path);
        CHECK(spool.recovery().reason == "no frame marker (seq numbering starts again at 1)");
        CHECK(spool.recovery().discarded_bytes == 25);
        CHECK(spool.next_seq() == 1);
    }
}

TEST_CASE("a spool of a later format is left alone")
{
    TempDir dir;
    std::string file;
    format::add_frame(file, 1, std::string{2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0});  // version 2, next seq 7
    file += "and what version 2 writes";
    write_file(dir.spool_file(), file);
    CHECK(open_error(dir.path) ==
        dir.spool_file().string() + ": is format 2, this cim-leaf reads format 1 (left as it is)");
    CHECK(read_file(dir.spool_file()) == file);
}

TEST_CASE("the oldest are evicted to stay within max_bytes, and reported")
{
    TempDir dir;
    const std::int64_t one = frame_bytes(record(1));
    {
        Spool spool = open_ok(dir.path, 3 * one);
        for (std::uint64_t seq = 1; seq <= 3; ++seq)
            CHECK(spool.append(record(seq)).empty());
        CHECK(spool.bytes() == 3 * one);

        const Dropped first = spool.append(record(4));
        CHECK(first.count == 1);
        CHECK(first.first_seq == 1);
        CHECK(first.last_seq == 1);
        CHECK(first.first_time == record(1).time);
        CHECK(first.last_time == record(1).time);

        // Twice the size: two must go.
        const Record big = record(5, static_cast<std::size_t>(one));
        REQUIRE(frame_bytes(big) > one);
        REQUIRE(frame_bytes(big) <= 2 * one);
        const Dropped second = spool.append(big);
        CHECK(second.count == 2);
        CHECK(second.first_seq == 2);
        CHECK(second.last_seq == 3);
        CHECK(second.first_time == record(2).time);
        CHECK(second.last_time == record(3).time);
        CHECK(seqs(spool) == std::vector<std::uint64_t>{4, 5});
        CHECK(spool.bytes() <= spool.max_bytes());

        Dropped total = first;
        total.add(second);
        CHECK(total.count == 3);
        CHECK(total.first_seq == 1);
        CHECK(total.last_seq == 3);
        CHECK(total.first_time == record(1).time);
        CHECK(total.last_time == record(3).time);
    }
    Spool spool = open_ok(dir.path, 3 * one);
    CHECK(seqs(spool) == std::vector<std::uint64_t>{4, 5});  // the evictions are in the file
    CHECK(spool.recovery().dropped.empty());
}

TEST_CASE("a record larger than the whole spool is the one dropped")
{
    TempDir dir;
    const std::int64_t one = frame_bytes(record(1));
    Spool spool = open_ok(dir.path, 2 * one);
    spool.append(record(1));
    const Dropped dropped = spool.append(record(2, static_cast<std::size_t>(2 * one)));
    CHECK(dropped.count == 1);
    CHECK(dropped.first_seq == 2);
    CHECK(dropped.last_seq == 2);
    CHECK(seqs(spool) == std::vector<std::uint64_t>{1});  // nothing older made way for it
    CHECK(spool.next_seq() == 3);
    CHECK(spool.durable());
}

TEST_CASE("a smaller max_bytes evicts the oldest, at open and on a reload")
{
    TempDir dir;
    const std::int64_t one = frame_bytes(record(1));
    {
        Spool spool = open_ok(dir.path);
        for (std::uint64_t seq = 1; seq <= 5; ++seq)
            spool.append(record(seq));
    }
    {
        Spool spool = open_ok(dir.path, 3 * one);
        CHECK(seqs(spool) == std::vector<std::uint64_t>{3, 4, 5});
        CHECK(spool.recovery().records == 3);
        CHECK(spool.recovery().dropped.count == 2);
        CHECK(spool.recovery().dropped.first_seq == 1);
        CHECK(spool.recovery().dropped.last_seq == 2);
        CHECK(spool.recovery().str() == "kept 3 events; dropped the oldest 2 (seq 1 to 2) to fit max_bytes");

        const Dropped dropped = spool.set_max_bytes(one);
        CHECK(dropped.count == 2);
        CHECK(dropped.first_seq == 3);
        CHECK(dropped.last_seq == 4);
        CHECK(seqs(spool) == std::vector<std::uint64_t>{5});
    }
    Spool spool = open_ok(dir.path, one);
    CHECK(seqs(spool) == std::vector<std::uint64_t>{5});
    CHECK(spool.recovery().dropped.empty());
}

TEST_CASE("a directory that cannot hold the spool is an error that says why")
{
    TempDir dir;
    CHECK(open_error(dir.path / "absent") ==
        (dir.path / "absent").string() + ": cannot open the spool directory: No such file or directory");
    write_file(dir.path / "file", "x");
    CHECK(open_error(dir.path / "file") ==
        (dir.path / "file").string() + ": cannot open the spool directory: Not a directory");
}

TEST_CASE("a directory this user cannot write to is an error that says why")
{
    TempDir dir;
    fs::create_directory(dir.path / "ro");
    fs::permissions(dir.path, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    fs::permissions(dir.path / "ro",
        fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_read |
            fs::perms::others_exec);
    std::string error;
    if (geteuid() != 0) {
        error = open_error(dir.path / "ro");
    } else {
        // Root writes anywhere: ask as nobody, in a child.
        int fds[2];
        REQUIRE(pipe(fds) == 0);
        const pid_t child = fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            close(fds[0]);
            const std::string text = setgid(65534) == 0 && setuid(65534) == 0 ? open_error(dir.path / "ro") : "";
            _exit(write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : 1);
        }
        close(fds[1]);
        char buffer[512];
        ssize_t n;
        while ((n = read(fds[0], buffer, sizeof buffer)) > 0)
            error.append(buffer, static_cast<std::size_t>(n));
        close(fds[0]);
        int status = 0;
        REQUIRE(waitpid(child, &status, 0) == child);
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        if (error.empty()) {
            // Root in a user namespace without uid 65534 (some build sandboxes).
            MESSAGE("skipped: cannot become uid 65534 to test an unwritable directory");
            return;
        }
    }
    CHECK(error == (dir.path / "ro" / "events.spool.tmp").string() + ": cannot create: Permission denied");
}

TEST_CASE("anything but a regular file in its place is refused, without blocking")
{
    TempDir dir;
    alarm(10);  // a FIFO opened for reading would wait forever for a writer
    SUBCASE("a FIFO")
    {
        REQUIRE(mkfifo(dir.spool_file().c_str(), 0600) == 0);
        CHECK(open_error(dir.path) == dir.spool_file().string() + ": is not a regular file");
    }
    SUBCASE("a symlink to a file elsewhere")
    {
        TempDir elsewhere;
        write_file(elsewhere.path / "target", "keep me");
        fs::create_symlink(elsewhere.path / "target", dir.spool_file());
        CHECK(open_error(dir.path) == dir.spool_file().string() + ": is a symbolic link");
        CHECK(read_file(elsewhere.path / "target") == "keep me");
    }
    SUBCASE("a dangling symlink")
    {
        fs::create_symlink(dir.path / "nowhere", dir.spool_file());
        CHECK(open_error(dir.path) == dir.spool_file().string() + ": is a symbolic link");
        CHECK_FALSE(fs::exists(dir.path / "nowhere"));
    }
    SUBCASE("a directory")
    {
        fs::create_directory(dir.spool_file());
        CHECK(open_error(dir.path) == dir.spool_file().string() + ": cannot open: Is a directory");
    }
    alarm(0);
}

TEST_CASE("what a crash mid-rewrite left is replaced, whatever it is")
{
    TempDir dir;
    const fs::path temporary = dir.path / "events.spool.tmp";
    SUBCASE("a partial file")
    {
        write_file(temporary, "partial");
    }
    SUBCASE("a FIFO")
    {
        REQUIRE(mkfifo(temporary.c_str(), 0600) == 0);
    }
    SUBCASE("a symlink")
    {
        fs::create_symlink(dir.path / "victim", temporary);
    }
    alarm(10);
    Spool spool = open_ok(dir.path);
    alarm(0);
    spool.append(record(1));
    CHECK_FALSE(fs::exists(temporary));
    CHECK_FALSE(fs::exists(dir.path / "victim"));
    CHECK(seqs(spool) == std::vector<std::uint64_t>{1});
}

TEST_CASE("one process at a time")
{
    TempDir dir;
    {
        Spool first = open_ok(dir.path);
        CHECK(open_error(dir.path) == dir.path.string() + ": another process holds the spool lock");
    }
    Spool again = open_ok(dir.path);  // released with the first
    CHECK(again.durable());
}

TEST_CASE("a failed write keeps the event pending, and the next write repairs the file")
{
    TempDir dir;
    std::optional<Spool> spool(open_ok(dir.path));
    spool->append(record(1));

    // Writes past this size fail with EFBIG, as on a full disk.
    rlimit old{};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    const auto old_handler = signal(SIGXFSZ, SIG_IGN);
    rlimit tight = old;
    tight.rlim_cur = static_cast<rlim_t>(spool->file_bytes() + 10);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &tight) == 0);
    spool->append(record(2));
    const bool durable_while_full = spool->durable();
    const std::string error = spool->error();
    spool->append(record(3));  // rewrites the file, which fails again
    const bool durable_still = spool->durable();
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);

    CHECK_FALSE(durable_while_full);
    CHECK(error == dir.spool_file().string() + ": cannot write: File too large");
    CHECK_FALSE(durable_still);
    CHECK(spool->error() == (dir.path / "events.spool.tmp").string() + ": cannot write: File too large");
    CHECK(seqs(*spool) == std::vector<std::uint64_t>{1, 2, 3});

    spool->acknowledge(1);  // room again: the whole file is rewritten
    CHECK(spool->durable());
    CHECK(spool->error().empty());
    CHECK_FALSE(fs::exists(dir.path / "events.spool.tmp"));
    spool.reset();
    CHECK(seqs(open_ok(dir.path)) == std::vector<std::uint64_t>{2, 3});
}

TEST_CASE("appending a seq before next_seq is a programming error")
{
    TempDir dir;
    Spool spool = open_ok(dir.path);
    spool.append(record(5));  // gaps are the caller's business
    CHECK(spool.next_seq() == 6);
    CHECK_THROWS_AS(spool.append(record(5)), std::invalid_argument);
    CHECK(seqs(spool) == std::vector<std::uint64_t>{5});
}

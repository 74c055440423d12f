// Cost of the spool's durable append (write + fdatasync per event, plus the
// acknowledgement and compaction), and of a burst of appends synced as the
// daemon syncs them (the Syncer's thread, events written meanwhile sharing
// the next fdatasync), against a plain write without fsync, on the file
// system of DIRECTORY. Prints per-event times and ratios; asserts nothing
// (a shared machine is noisy). bench/run.sh runs it several times,
// with -r every other time, and prints medians and spreads.
//
//   spool-bench [-n EVENTS] [-s PAYLOAD_BYTES] [-r] [-j] [DIRECTORY]   (default $TMPDIR or /tmp)
//     -r: the Spool first, then the plain writes; -j: one JSON object
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <variant>

#include "event_loop.hpp"
#include "events/spool.hpp"
#include "events/spool_format.hpp"
#include "events/syncer.hpp"

using namespace cim::events;
using Clock = std::chrono::steady_clock;

namespace {

double micros_since(Clock::time_point start, int events)
{
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / events;
}

Record make_record(std::uint64_t seq, std::size_t payload_bytes)
{
    return {seq, "0190f0e2-7c3a-7000-8000-000000000000", "cim.leaf.n1.events.reloaded", std::string(payload_bytes, 'x'),
        std::chrono::system_clock::now()};
}

// Appends each event's frame with write(2); fdatasync after each if `sync`.
double plain(const std::filesystem::path& file, int events, std::size_t payload_bytes, bool sync)
{
    const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        std::perror(file.c_str());
        std::exit(1);
    }
    const auto start = Clock::now();
    for (int i = 1; i <= events; ++i) {
        std::string frame;
        format::add_event(frame, make_record(static_cast<std::uint64_t>(i), payload_bytes));
        if (write(fd, frame.data(), frame.size()) != static_cast<ssize_t>(frame.size()) ||
            (sync && fdatasync(fd) != 0)) {
            std::perror("write");
            std::exit(1);
        }
    }
    const double per_event = micros_since(start, events);
    close(fd);
    return per_event;
}

Spool open_spool(const std::filesystem::path& directory)
{
    auto opened = Spool::open(directory, std::int64_t{1} << 30);
    if (auto* error = std::get_if<std::string>(&opened)) {
        std::fprintf(stderr, "spool-bench: %s\n", error->c_str());
        std::exit(1);
    }
    return std::get<Spool>(std::move(opened));
}

struct Costs {
    double write_only = 0;  // per event, µs
    double write_sync = 0;
    double append = 0;
    double append_ack = 0;
    double burst = 0;  // until the last of the burst is on disk
    double burst_loop = 0;  // of which the loop thread's own
    int burst_syncs = 0;
    double reopen_ms = 0;
};

// `events` appended back to back on a loop, each handed to a Syncer as the
// daemon does, until the last is on disk.
void measure_burst(Spool& spool, int events, std::size_t payload_bytes, Costs& costs)
{
    cim::EventLoop loop;
    Syncer syncer(loop, [&](const Spool::Unsynced& what, int error) {
        spool.synced(what, error);
        ++costs.burst_syncs;
    });
    const auto start = Clock::now();
    const std::uint64_t first = spool.next_seq();
    std::uint64_t last = 0;
    for (int i = 0; i < events; ++i) {
        last = spool.next_seq();
        spool.append(make_record(last, payload_bytes));
        if (auto unsynced = spool.unsynced())
            syncer.request(std::move(*unsynced));
    }
    costs.burst_loop = micros_since(start, events);
    while (!spool.may_send(last))
        loop.run_for(std::chrono::milliseconds(1));
    costs.burst = micros_since(start, events);
    if (!spool.durable()) {
        std::fprintf(stderr, "spool-bench: %s\n", spool.error().c_str());
        std::exit(1);
    }
    for (std::uint64_t seq = first; seq <= last; ++seq)
        spool.acknowledge(seq);  // the open after reads back only the unacknowledged first `events`
}

void measure_plain(const std::filesystem::path& directory, int events, std::size_t payload_bytes, Costs& costs)
{
    costs.write_only = plain(directory / "plain", events, payload_bytes, false);
    costs.write_sync = plain(directory / "plain", events, payload_bytes, true);
}

void measure_spool(const std::filesystem::path& directory, int events, std::size_t payload_bytes, Costs& costs)
{
    {
        Spool spool = open_spool(directory);
        auto start = Clock::now();
        for (int i = 0; i < events; ++i) {
            spool.append(make_record(spool.next_seq(), payload_bytes));
            spool.sync();
        }
        costs.append = micros_since(start, events);
        // Each acknowledged as soon as written, as with a live stream.
        start = Clock::now();
        for (int i = 0; i < events; ++i) {
            const std::uint64_t seq = spool.next_seq();
            spool.append(make_record(seq, payload_bytes));
            spool.sync();
            spool.acknowledge(seq);
        }
        costs.append_ack = micros_since(start, events);
        measure_burst(spool, events, payload_bytes, costs);
    }
    const auto start = Clock::now();
    const Spool spool = open_spool(directory);  // reads `events` pending back and rewrites them
    costs.reopen_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv)
{
    int events = 2000;
    std::size_t payload_bytes = 400;  // a typical event's JSON
    bool spool_first = false;
    bool json = false;
    for (int option; (option = getopt(argc, argv, "n:s:rj")) != -1;) {
        if (option == 'n')
            events = std::atoi(optarg);
        else if (option == 's')
            payload_bytes = static_cast<std::size_t>(std::atoi(optarg));
        else if (option == 'r')
            spool_first = true;
        else if (option == 'j')
            json = true;
        else
            return 2;
    }
    const char* tmp = std::getenv("TMPDIR");
    const std::filesystem::path base = optind < argc ? argv[optind] : tmp ? tmp : "/tmp";
    std::string name = (base / "spool-bench.XXXXXX").string();
    if (events <= 0 || !mkdtemp(name.data())) {
        std::perror(name.c_str());
        return 1;
    }
    const std::filesystem::path directory = name;

    Costs costs;
    if (spool_first)
        measure_spool(directory, events, payload_bytes, costs);
    measure_plain(directory, events, payload_bytes, costs);
    if (!spool_first)
        measure_spool(directory, events, payload_bytes, costs);
    std::filesystem::remove_all(directory);

    if (json) {
        std::printf("{\"events\": %d, \"payload_bytes\": %zu, \"write_us\": %.3f, \"write_fdatasync_us\": %.3f, "
                    "\"append_us\": %.3f, \"append_acknowledge_us\": %.3f, \"burst_us\": %.3f, "
                    "\"burst_loop_us\": %.3f, \"burst_fdatasyncs\": %d, \"open_ms\": %.3f}\n",
            events, payload_bytes, costs.write_only, costs.write_sync, costs.append, costs.append_ack, costs.burst,
            costs.burst_loop, costs.burst_syncs, costs.reopen_ms);
        return 0;
    }
    std::printf("spool-bench: %d events of %zu payload bytes in %s\n", events, payload_bytes, base.c_str());
    std::printf("%-34s %10s %8s\n", "per event", "us", "ratio");
    std::printf("%-34s %10.2f %8.1f\n", "write, no fsync", costs.write_only, 1.0);
    std::printf("%-34s %10.2f %8.1f\n", "write + fdatasync", costs.write_sync, costs.write_sync / costs.write_only);
    const auto row = [&](const char* label, double us) {
        std::printf("%-34s %10.2f %8.1f\n", label, us, us / costs.write_only);
    };
    row("Spool::append + sync", costs.append);
    row("Spool::append + sync + acknowledge", costs.append_ack);
    row("burst with the Syncer, to disk", costs.burst);
    row("  of which on the loop", costs.burst_loop);
    std::printf("the burst of %d took %d fdatasyncs\n", events, costs.burst_syncs);
    std::printf("open with %d pending (read, rewrite): %.1f ms\n", events, costs.reopen_ms);
    return 0;
}

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>

#include <doctest/doctest.h>

#include "event_loop.hpp"

using namespace cim;
using namespace std::chrono_literals;

namespace {

std::uint64_t monotonic_usec()
{
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(now.tv_nsec) / 1000;
}

// Runs the loop until a callback exits it; 2 if nothing does within a second.
int run_bounded(EventLoop& loop)
{
    auto guard = loop.after(1s, [&] { loop.exit(2); });
    return loop.run();
}

}  // namespace

TEST_CASE("a periodic timer ticks at its new interval after set_interval")
{
    EventLoop loop;
    int ticks = 0;
    Timer timer = loop.every(1h, [&] {
        if (++ticks == 3)
            loop.exit(0);
    });
    timer.set_interval(1ms);
    CHECK(run_bounded(loop) == 0);
    CHECK(ticks == 3);

    Timer().set_interval(1ms);  // nothing to re-arm, and no crash
}

TEST_CASE("a periodic timer may be dropped from its own callback")
{
    EventLoop loop;
    Timer timer;
    timer = loop.every(1ms, [&] {
        timer = Timer();
        loop.exit(0);
    });
    CHECK(run_bounded(loop) == 0);
    CHECK(!timer);
}

TEST_CASE("a driven library is processed when its fd is ready and at its deadline")
{
    EventLoop loop;
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    IoWants wants{EPOLLIN, UINT64_MAX};
    int processed = 0;
    ExternalIo io;
    io = loop.drive(
        fds[0], [&] { return wants; },
        [&] {
            ++processed;
            char byte = 0;
            if (processed == 1) {
                CHECK(read(fds[0], &byte, 1) == 1);
                wants = {0, monotonic_usec() + 1000};  // nothing to read: only the deadline wakes it
            } else {
                io = ExternalIo();  // from within: sd-event frees the source after this returns
                loop.exit(0);
            }
        });
    CHECK(write(fds[1], "x", 1) == 1);
    CHECK(run_bounded(loop) == 0);
    CHECK(processed == 2);
    CHECK(!io);
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("a callback that throws ends the loop with 1 instead of std::terminate")
{
    EventLoop loop;
    auto failing = loop.after(1ms, [] { throw std::runtime_error("cannot start a thread"); });
    bool later = false;
    auto after = loop.after(50ms, [&] { later = true; });
    CHECK(run_bounded(loop) == 1);
    CHECK_FALSE(later);
}

#pragma once

#include <chrono>
#include <thread>

namespace cim::nats {

// nats.c's start (OpenSSL's configuration and random generator, three
// threads: about 3 ms here) is the longest step on the way to READY=1. A
// Library runs it on a thread of its own from the first moment of `run`,
// while the config is read, the spool recovered, `started` written and the
// bus connected; only the first caller of nats.c, a Link's supervisor,
// waits for it. nats.c's threads take that thread's signal mask: it blocks
// every signal, which are the event loop's.
class Library {
public:
    Library();
    Library(const Library&) = delete;
    Library& operator=(const Library&) = delete;
    ~Library() = default;  // the start is waited for on every way out

    // Waits for the start, then closes nats.c and joins its threads, giving
    // what they still deliver `bound` at most.
    void close(std::chrono::milliseconds bound);

    // Until a Library's start has finished; at once when none is starting.
    static void wait_started();

private:
    std::jthread starting_;
};

}  // namespace cim::nats

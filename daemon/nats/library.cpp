#include "nats/library.hpp"

#include <condition_variable>
#include <mutex>

#include <nats/nats.h>

#include "util/thread.hpp"

namespace cim::nats {

namespace {

std::mutex mutex;
std::condition_variable started;
bool starting = false;

}  // namespace

Library::Library()
{
    {
        std::lock_guard lock(mutex);
        starting = true;
    }
    starting_ = util::start_thread<std::jthread>("the thread that starts nats.c", [] {
        nats_Open(-1);  // if it fails, the first connect says why
        std::lock_guard lock(mutex);
        starting = false;
        started.notify_all();
    });
}

void Library::close(std::chrono::milliseconds bound)
{
    if (starting_.joinable())
        starting_.join();
    nats_CloseAndWait(static_cast<int>(bound.count()));
}

void Library::wait_started()
{
    std::unique_lock lock(mutex);
    started.wait(lock, [] { return !starting; });
}

}  // namespace cim::nats

#pragma once

#include <pthread.h>

#include <csignal>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace cim::util {

// A thread (std::thread or std::jthread) running `body` with every signal
// blocked: signals are the event loop's, and a thread made before the loop
// blocks them would otherwise take them (their default action ends the
// daemon). One that cannot be made (TasksMax=, kernel.threads-max) is an
// error that says which:
// "cannot start the event spool's sync thread: Resource temporarily unavailable".
template <typename Thread, typename Body> Thread start_thread(const char* what, Body&& body)
{
    try {
        return Thread([body = std::forward<Body>(body)](auto&&... arguments) mutable {
            sigset_t all;
            sigfillset(&all);
            pthread_sigmask(SIG_BLOCK, &all, nullptr);
            // A jthread passes its stop_token, which a body need not take.
            if constexpr (std::is_invocable_v<std::decay_t<Body>&, decltype(arguments)...>)
                body(std::forward<decltype(arguments)>(arguments)...);
            else
                body();
        });
    } catch (const std::system_error& e) {
        throw std::runtime_error(std::string("cannot start ") + what + ": " + e.code().message());
    }
}

}  // namespace cim::util

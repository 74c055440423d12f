#pragma once

#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace cim::util {

// A thread (std::thread or std::jthread) running `body`; one that cannot be
// made (TasksMax=, kernel.threads-max) is an error that says which:
// "cannot start the event spool's sync thread: Resource temporarily unavailable".
template <typename Thread, typename Body> Thread start_thread(const char* what, Body&& body)
{
    try {
        return Thread(std::forward<Body>(body));
    } catch (const std::system_error& e) {
        throw std::runtime_error(std::string("cannot start ") + what + ": " + e.code().message());
    }
}

}  // namespace cim::util

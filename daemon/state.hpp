#pragma once

#include <string_view>

namespace cim {

// The daemon's life cycle, as shown in heartbeats, health and D-Bus State.
enum class State { starting, connecting, connected, reconnecting, reloading, stopping };

constexpr std::string_view to_string(State state)
{
    switch (state) {
    case State::starting:
        return "starting";
    case State::connecting:
        return "connecting";
    case State::connected:
        return "connected";
    case State::reconnecting:
        return "reconnecting";
    case State::reloading:
        return "reloading";
    case State::stopping:
        return "stopping";
    }
    return "unknown";
}

}  // namespace cim

#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/fd.hpp"

namespace cim {

// The sd_notify protocol (sd_notify(3)). Message builders are pure so the
// exact datagrams are unit-tested; Notifier sends them.
namespace notify_message {

std::string ready(std::string_view status);
// RELOADING=1 and MONOTONIC_USEC must share one datagram: systemd matches
// the reload by that timestamp (systemd.service(5), Type=notify-reload).
std::string reloading(std::uint64_t monotonic_usec, std::string_view status);
std::string stopping(std::string_view status);
std::string status(std::string_view status);
std::string watchdog();

}  // namespace notify_message

class Notifier {
public:
    // Reads NOTIFY_SOCKET and WATCHDOG_USEC once; both stay valid for the
    // daemon's life, so they are not removed from the environment.
    Notifier();

    bool enabled() const { return enabled_; }
    // How often to send WATCHDOG=1 (half of WATCHDOG_USEC), if asked to.
    std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }
    std::chrono::microseconds watchdog_usec() const { return watchdog_usec_; }

    void send(const std::string& message) const;

private:
    bool enabled_ = false;
    util::Fd fd_;  // invalid: sd_notify does it
    sockaddr_un address_{};
    socklen_t address_length_ = 0;
    std::chrono::microseconds watchdog_usec_{0};
    std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace cim

#include "notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "util/text.hpp"

namespace cim {

namespace notify_message {

namespace {

// STATUS= ends at the newline, so one may not appear inside it.
// systemd ignores a STATUS= that is not UTF-8, and the text may carry a
// server's words or a path.
std::string status_line(std::string_view status)
{
    std::string line = "STATUS=";
    for (char c : util::to_valid_utf8(status))
        line += c == '\n' ? ' ' : c;
    return line;
}

}  // namespace

std::string ready(std::string_view status)
{
    return "READY=1\n" + status_line(status);
}

std::string reloading(std::uint64_t monotonic_usec, std::string_view status)
{
    return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec) + "\n" + status_line(status);
}

std::string stopping(std::string_view status)
{
    return "STOPPING=1\n" + status_line(status);
}

std::string status(std::string_view status)
{
    return status_line(status);
}

std::string watchdog()
{
    return "WATCHDOG=1";
}

}  // namespace notify_message

Notifier::Notifier()
{
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket != nullptr && *socket != '\0';
    // One socket for the daemon's life: sd_notify opens (and sizes) a new
    // one for each message. A path or an abstract name ("@...") as
    // libsystemd takes them; anything else is left to sd_notify.
    const std::size_t length = enabled_ ? std::strlen(socket) : 0;
    if (enabled_ && (socket[0] == '/' || socket[0] == '@') && length < sizeof(address_.sun_path)) {
        address_.sun_family = AF_UNIX;
        std::memcpy(address_.sun_path, socket, length);
        if (socket[0] == '@')
            address_.sun_path[0] = '\0';
        address_length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
        fd_ = util::Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    }
    std::uint64_t usec = 0;
    if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) {
        watchdog_usec_ = std::chrono::microseconds(usec);
        watchdog_interval_ = std::chrono::microseconds(usec / 2);
    }
}

void Notifier::send(const std::string& message) const
{
    if (!enabled_)
        return;
    int error = 0;
    if (fd_) {
        if (sendto(fd_.get(), message.data(), message.size(), MSG_NOSIGNAL,
                reinterpret_cast<const sockaddr*>(&address_), address_length_) < 0)
            error = errno;
    } else if (const int r = sd_notify(0, message.c_str()); r < 0) {
        error = -r;
    }
    if (error != 0)
        spdlog::warn("cannot notify systemd ({}): {}", message.substr(0, message.find('\n')), std::strerror(error));
}

}  // namespace cim

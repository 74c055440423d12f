#include "nats/socket.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace cim::nats {

namespace {

struct Address {
    std::string ip;
    int port = 0;
    bool operator==(const Address&) const = default;
};

// The local address of `fd` in nats.c's notation, if it is a TCP socket.
bool local_address(int fd, Address& out)
{
    int type = 0;
    socklen_t type_length = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_length) != 0 || type != SOCK_STREAM)
        return false;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
        return false;
    char ip[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
        out = {ip, ntohs(v4->sin_port)};
        return true;
    }
    if (address.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
        inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
        out = {ip, ntohs(v6->sin6_port)};
        return true;
    }
    return false;
}

int find_socket(const Address& wanted)
{
    struct Close {
        void operator()(DIR* dir) const { closedir(dir); }
    };
    std::unique_ptr<DIR, Close> fds(opendir("/proc/self/fd"));
    if (!fds)
        return -1;
    const int own = dirfd(fds.get());
    while (const dirent* entry = readdir(fds.get())) {
        char* end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        Address address;
        if (*end == '\0' && end != entry->d_name && fd != own && local_address(static_cast<int>(fd), address) &&
            address == wanted)
            return static_cast<int>(fd);
    }
    return -1;
}

}  // namespace

bool block_reads(natsConnection* connection, std::chrono::milliseconds send_timeout)
{
    char* ip = nullptr;
    int port = 0;
    if (natsConnection_GetLocalIPAndPort(connection, &ip, &port) != NATS_OK)
        return false;
    const Address local{ip, port};
    std::free(ip);
    const int fd = find_socket(local);
    if (fd < 0)
        return false;
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(send_timeout);
    const timeval timeout{static_cast<time_t>(seconds.count()),
        static_cast<suseconds_t>(std::chrono::microseconds(send_timeout - seconds).count())};
    const int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) == 0 &&
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0;
}

}  // namespace cim::nats

#include "nats/connection.hpp"

namespace cim::nats {

std::int64_t header_bytes(const Headers& headers)
{
    if (headers.empty())
        return 0;
    std::size_t bytes = sizeof "NATS/1.0\r\n" - 1 + 2;  // the version line, the closing blank line
    for (const auto& [key, value] : headers)
        bytes += key.size() + 2 + value.size() + 2;  // "Key: value\r\n"
    return static_cast<std::int64_t>(bytes);
}

}  // namespace cim::nats

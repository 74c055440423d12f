#include "util/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cim::util {

namespace {

FileContents failure(std::string error)
{
    return {std::nullopt, std::move(error)};
}

FileContents read_open_file(int fd, std::size_t max_bytes)
{
    struct stat st { };
    if (fstat(fd, &st) != 0)
        return failure(std::string("cannot stat: ") + std::strerror(errno));
    if (S_ISDIR(st.st_mode))
        return failure("is a directory, not a regular file");
    if (!S_ISREG(st.st_mode))
        return failure("is not a regular file");
    // Reads one byte past the limit: the file may have grown since fstat.
    std::string text;
    char buffer[65536];
    while (text.size() <= max_bytes) {
        const ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return failure(std::string("cannot read: ") + std::strerror(errno));
        if (n == 0)
            break;
        text.append(buffer, static_cast<std::size_t>(n));
    }
    if (text.size() > max_bytes)
        return failure("is larger than " + std::to_string(max_bytes) + " bytes");
    return {std::move(text), {}};
}

}  // namespace

FileContents read_regular_file(const std::string& path, std::size_t max_bytes)
{
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
    // after fstat, and reading a regular file is unaffected.
    const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return failure(std::string("cannot open: ") + std::strerror(errno));
    FileContents contents = read_open_file(fd, max_bytes);
    close(fd);
    return contents;
}

}  // namespace cim::util

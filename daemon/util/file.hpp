#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace cim::util {

struct FileContents {
    std::optional<std::string> text;
    std::string error;  // why there is no text: "cannot open: Permission denied", "is not a regular file"
};

// The whole of a small regular file. Anything else is refused without
// blocking: opening or reading a FIFO would wait forever for a writer.
FileContents read_regular_file(const std::string& path, std::size_t max_bytes);

}  // namespace cim::util

#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cim::fleet {

enum class Colour { none, green, yellow, red };

struct Cell {
    std::string text;  // printable ASCII (printable()), so its width is its size
    Colour colour = Colour::none;
};

// Columns as wide as their widest cell, two spaces apart, the last one not
// padded; with `colour`, coloured cells in ANSI SGR colours.
std::string aligned(const std::vector<std::string>& header, const std::vector<std::vector<Cell>>& rows, bool colour);

// `text` (from a leaf's answer) with every byte that is not printable ASCII
// replaced by '?': no terminal escapes, and one column a byte.
std::string printable(std::string_view text);

// `text` in `colour` when `enabled`.
std::string painted(const std::string& text, Colour colour, bool enabled);

}  // namespace cim::fleet

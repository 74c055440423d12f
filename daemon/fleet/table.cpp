#include "fleet/table.hpp"

#include <algorithm>

namespace cim::fleet {

std::string painted(const std::string& text, Colour colour, bool enabled)
{
    if (!enabled || colour == Colour::none)
        return text;
    const char* sgr = colour == Colour::green ? "\x1b[32m" : colour == Colour::yellow ? "\x1b[33m" : "\x1b[1;31m";
    return sgr + text + "\x1b[0m";
}

std::string aligned(const std::vector<std::string>& header, const std::vector<std::vector<Cell>>& rows, bool colour)
{
    std::vector<std::size_t> widths;
    for (const auto& title : header)
        widths.push_back(title.size());
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i)
            widths[i] = std::max(widths[i], row[i].text.size());

    auto line = [&](const std::vector<Cell>& cells) {
        std::string out;
        for (std::size_t i = 0; i < cells.size(); ++i) {
            out += painted(cells[i].text, cells[i].colour, colour);
            if (i + 1 < cells.size())
                out += std::string(widths[i] - cells[i].text.size() + 2, ' ');
        }
        return out + "\n";
    };
    std::vector<Cell> titles;
    for (const auto& title : header)
        titles.push_back({title});
    std::string out = line(titles);
    for (const auto& row : rows)
        out += line(row);
    return out;
}

std::string printable(std::string_view text)
{
    std::string out(text);
    std::replace_if(
        out.begin(), out.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
    return out;
}

}  // namespace cim::fleet

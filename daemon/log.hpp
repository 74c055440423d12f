#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/common.h>

namespace cim::log {

// Sends spdlog to the journal (with PRIORITY and CIM_* fields) when stderr is
// connected to it, as systemd tells through JOURNAL_STREAM; otherwise plain
// lines on stderr.
void setup();

// "trace" ... "error"; nullopt for anything else.
std::optional<spdlog::level::level_enum> parse_level(std::string_view name);
void set_level(spdlog::level::level_enum level);

// Added as CIM_NODE_ID= to every journal entry from now on.
void set_node_id(const std::string& node_id);

}  // namespace cim::log

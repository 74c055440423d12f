#pragma once

#include "cli.hpp"

namespace cim::dbus {

// `cim-leaf status`: asks the running daemon for its health over D-Bus and
// prints a summary (or the JSON). Returns the process exit code.
int status_command(const cli::Status& options);

}  // namespace cim::dbus

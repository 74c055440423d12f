#pragma once

#include "cli.hpp"

namespace cim::fleet {

// `cim-leaf fleet`: asks every leaf for its health over NATS and prints the
// fleet (or the JSON). Returns the process exit code.
int fleet_command(const cli::Fleet& options);

}  // namespace cim::fleet

#pragma once

#include <string>

#include <nats/nats.h>

#include "config/config.hpp"
#include "nats/auth.hpp"

namespace cim::nats {

// What every connection to the configured servers is made with, the
// daemon's (Link) and `cim-leaf fleet`'s alike: the servers, the client name,
// the credentials, the CA and client certificate, how long one connect
// attempt may take per server, and TLS made mandatory when any URL is tls://
// or any TLS file is set (nats.c would otherwise speak plain text to a server
// that offers no TLS). The caller adds its own: reconnects, callbacks.
natsStatus set_connection_options(natsOptions* options, const config::NatsConfig& nats, const Auth& auth);

// Why the first connect failed, in the server's words where there are some.
std::string connect_failure(natsStatus status);

std::string status_text(natsStatus status);
// This thread's last nats.c error in words; empty when it has none (nats.c
// gives NULL then, as when its own start failed).
std::string last_error();

}  // namespace cim::nats

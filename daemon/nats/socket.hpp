#pragma once

#include <chrono>

#include <nats/nats.h>

namespace cim::nats {

// nats.c keeps a connection's socket non-blocking whenever a write deadline
// is set, and then reads each message with recv (EAGAIN), poll and recv
// again: three system calls where a blocking socket needs one, a fifth of
// the CPU a health request costs. This makes the socket blocking again and
// bounds a write with SO_SNDTIMEO instead: a send that moves nothing for
// `send_timeout` fails with EAGAIN, nats.c then finds its own deadline
// passed, shuts the socket down and reconnects, as it does on its own.
// `send_timeout` must not exceed the write deadline given to nats.c.
//
// nats.c does not expose the socket, so it is found by its local address.
// False if it was not found (the connection is already gone): nats.c's own
// non-blocking mode then stays, which is correct, only slower.
bool block_reads(natsConnection* connection, std::chrono::milliseconds send_timeout);

}  // namespace cim::nats

#!/usr/bin/env node
// Reads a JetStream stream with the official nats.js client, independently
// of the daemon: every message from the first to the last, in stream order.
//
//   node stream.mjs --server nats://127.0.0.1:4222 --stream CIM_LEAF_EVENTS [--domain D]
//
// Prints a JSON array of {seq, subject, headers, data} (data parsed as JSON)
// and exits 0, or prints the reason on stderr and exits 1.
import { connect } from "nats";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    server: { type: "string" },
    stream: { type: "string", default: "CIM_LEAF_EVENTS" },
    domain: { type: "string" },
  },
});

try {
  const nc = await connect({ servers: values.server, timeout: 5000 });
  const jsm = await nc.jetstreamManager(values.domain ? { domain: values.domain } : {});
  const info = await jsm.streams.info(values.stream);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(values.stream, { seq });
    const headers = {};
    for (const [key, value] of m.header ?? []) headers[key] = value.join(",");
    out.push({ seq: m.seq, subject: m.subject, headers, data: m.json() });
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  await nc.close();
} catch (e) {
  process.stderr.write(`stream.mjs: ${e.message}\n`);
  process.exit(1);
}

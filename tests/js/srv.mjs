#!/usr/bin/env node
// Independent check of the daemon's hand-written NATS service protocol
// (ADR-32) with the official nats.js service client.
//
//   node srv.mjs --server nats://127.0.0.1:4222 --name cim-leaf [--timeout-ms 2000]
//
// Prints {"ping":[...],"info":[...],"stats":[...]} (every response to
// $SRV.<VERB>.<name>) and exits 0, or prints the reason on stderr and exits 1.
// nats.js only JSON-decodes responses, so each one is also checked against the
// rules of the nats.io micro/v1 JSON schemas, and the per-id subjects and the
// nameless $SRV.<VERB> subjects must answer too.
import { connect, RequestStrategy, ServiceResponseType } from "nats";
import { parseArgs } from "node:util";

const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
const NAME = /^[a-zA-Z0-9_-]+$/;
const RFC3339 =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function fail(msg) {
  process.stderr.write(`srv.mjs: FAIL: ${msg}\n`);
  process.exit(1);
}

function check(cond, what, resp) {
  if (!cond) fail(`${what} in ${JSON.stringify(resp)}`);
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isInt = (v) => Number.isSafeInteger(v);
const isStrMap = (v) => isObj(v) && Object.values(v).every((x) => typeof x === "string");

// Fields every response shares (DESIGN.md: metadata is an object, {} when empty).
function checkCommon(r, type, name) {
  check(isObj(r), "response is not a JSON object", r);
  check(r.type === type, `type is not ${type}`, r);
  check(r.name === name, `name is not "${name}"`, r);
  check(typeof r.id === "string" && r.id.length > 0, "id missing or empty", r);
  check(typeof r.version === "string" && SEMVER.test(r.version), "version is not SemVer", r);
  check(isStrMap(r.metadata), "metadata is not an object of strings", r);
}

function checkEndpointIdent(e, r) {
  check(isObj(e), "endpoint is not an object", r);
  check(typeof e.name === "string" && NAME.test(e.name), "endpoint name invalid", r);
  check(typeof e.subject === "string" && e.subject.length > 0, "endpoint subject missing", r);
}

const checks = {
  ping(r, name) {
    checkCommon(r, ServiceResponseType.PING, name);
  },
  info(r, name) {
    checkCommon(r, ServiceResponseType.INFO, name);
    check(typeof r.description === "string", "description missing", r);
    check(Array.isArray(r.endpoints), "endpoints is not an array", r);
    for (const e of r.endpoints) {
      checkEndpointIdent(e, r);
      // "" is how nats.go reports a disabled queue group (every instance answers).
      check(typeof e.queue_group === "string", "endpoint queue_group missing", r);
      check(e.metadata === undefined || e.metadata === null || isStrMap(e.metadata),
        "endpoint metadata is not an object of strings", r);
    }
  },
  stats(r, name) {
    checkCommon(r, ServiceResponseType.STATS, name);
    check(typeof r.started === "string" && RFC3339.test(r.started) &&
      !Number.isNaN(Date.parse(r.started)), "started is not RFC 3339", r);
    check(Array.isArray(r.endpoints), "endpoints is not an array", r);
    for (const e of r.endpoints) {
      checkEndpointIdent(e, r);
      for (const k of ["num_requests", "num_errors", "processing_time", "average_processing_time"]) {
        check(isInt(e[k]) && e[k] >= 0, `endpoint ${k} is not a non-negative integer`, r);
      }
      // The schema requires last_error, but nats.js itself omits it when empty.
      check(e.last_error === undefined || typeof e.last_error === "string",
        "endpoint last_error is not a string", r);
    }
  },
};

async function collect(svc, verb, name, id) {
  const subject = ["$SRV", verb.toUpperCase(), name, id].filter(Boolean).join(".");
  const out = [];
  try {
    // The iterator throws if nats.js could not decode a response.
    for await (const r of await svc[verb](name, id)) out.push(r);
  } catch (err) {
    if (err?.code === "503") fail(`no responders on ${subject}: is the service running?`);
    fail(`${subject}: nats.js rejected a response: ${err?.message ?? err}`);
  }
  return out;
}

async function main() {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: "nats://127.0.0.1:4222" },
      name: { type: "string", default: "cim-leaf" },
      "timeout-ms": { type: "string", default: "2000" },
    },
  });
  const maxWait = Number(values["timeout-ms"]);
  if (!(maxWait > 0)) fail(`--timeout-ms must be a positive number`);
  const name = values.name;

  let nc;
  try {
    nc = await connect({ servers: values.server, timeout: maxWait, reconnect: false });
  } catch (err) {
    fail(`cannot connect to ${values.server}: ${err.message}`);
  }
  // Stop 300 ms after the last response, or at maxWait: enough for all
  // services on a quiet local server.
  const svc = nc.services.client({ strategy: RequestStrategy.JitterTimer, maxWait, jitter: 300 });

  // The three verbs are independent: ask them in parallel to keep this fast.
  const verbs = ["ping", "info", "stats"];
  const out = {};
  await Promise.all(verbs.map(async (verb) => {
    out[verb] = await collect(svc, verb, name);
    if (out[verb].length === 0) fail(`no response on $SRV.${verb.toUpperCase()}.${name} within ${maxWait} ms`);
    for (const r of out[verb]) checks[verb](r, name);
  }));

  // Every instance must answer the same set of ids on each verb, on its own
  // per-id subject, and on the nameless subject.
  const ids = (list) => list.map((r) => r.id).sort();
  const pingIds = ids(out.ping);
  for (const verb of ["info", "stats"]) {
    if (JSON.stringify(ids(out[verb])) !== JSON.stringify(pingIds)) {
      fail(`${verb} ids ${ids(out[verb])} differ from ping ids ${pingIds}`);
    }
  }
  await Promise.all(verbs.flatMap((verb) => [
    ...pingIds.map(async (id) => {
      const one = await collect(svc, verb, name, id);
      if (one.length !== 1 || one[0].id !== id) {
        fail(`$SRV.${verb.toUpperCase()}.${name}.${id} gave ${one.length} responses, want exactly 1 with that id`);
      }
      checks[verb](one[0], name);
    }),
    (async () => {
      const all = (await collect(svc, verb)).filter((r) => r.name === name);
      for (const id of pingIds) {
        if (!all.some((r) => r.id === id)) fail(`$SRV.${verb.toUpperCase()} got no answer from ${name} ${id}`);
      }
    })(),
  ]));

  await nc.close();
  process.stdout.write(JSON.stringify({ ping: out.ping, info: out.info, stats: out.stats }) + "\n");
}

main().catch((err) => fail(err?.stack || String(err)));

#!/usr/bin/env node
// Generates fresh credentials and nats-server configs for every NATS auth
// mode the daemon supports, so integration tests run against a real server.
//
//   node auth.mjs <dir> [--verify]
//
// Each <mode>.conf is a complete nats-server config except the listen port:
// run it as `nats-server -c <dir>/<mode>.conf -a 127.0.0.1 -p PORT`.
// Prints a JSON index of the files and public keys on stdout. --verify also
// starts nats-server with each config and checks that nats.js gets in with
// the generated secret and is turned away without it.
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
} from "@nats-io/jwt";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { resolve } from "node:path";
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from "nats";

function fail(msg) {
  process.stderr.write(`auth.mjs: FAIL: ${msg}\n`);
  process.exit(1);
}

const te = new TextEncoder();
const td = new TextDecoder();
const secret = () => randomBytes(18).toString("base64url");

// Secrets are 0600 like a systemd credential; configs and keys are public.
function write(dir, name, data, mode = 0o644) {
  const p = resolve(dir, name);
  writeFileSync(p, data, { mode });
  chmodSync(p, mode); // writeFileSync keeps the mode of an existing file
  return p;
}

// (a) operator -> account -> user JWT chain, resolved from memory.
async function operatorMode(dir) {
  const op = createOperator();
  const sys = createAccount();
  const acc = createAccount();
  const user = createUser();
  const opJwt = await encodeOperator("cim-op", op, { system_account: sys.getPublicKey() });
  // An account JWT without limits allows nothing (0 connections, 0 subs).
  const limits = {
    subs: -1, data: -1, payload: -1, imports: -1, exports: -1,
    wildcards: true, conn: -1, leaf: -1,
  };
  const sysJwt = await encodeAccount("SYS", sys, { limits }, { signer: op });
  const accJwt = await encodeAccount("CIM", acc, { limits }, { signer: op });
  const userJwt = await encodeUser("cim-leaf", user, acc);
  const conf = [
    `operator: ${opJwt}`,
    `system_account: ${sys.getPublicKey()}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${sys.getPublicKey()}: ${sysJwt}`,
    `  ${acc.getPublicKey()}: ${accJwt}`,
    "}",
    "",
  ].join("\n");
  return {
    conf: write(dir, "operator.conf", conf),
    creds: write(dir, "user.creds", fmtCreds(userJwt, user), 0o600),
    operator_public_key: op.getPublicKey(),
    system_account_public_key: sys.getPublicKey(),
    account_public_key: acc.getPublicKey(),
    user_public_key: user.getPublicKey(),
  };
}

// (b) a bare user NKey: the server knows the public key, the client the seed.
function nkeyMode(dir) {
  const user = createUser();
  const pub = user.getPublicKey();
  return {
    conf: write(dir, "nkey.conf", `authorization {\n  users = [ { nkey: ${pub} } ]\n}\n`),
    // Just the seed and a newline, like `nk -gen user > user.nk`.
    seed_file: write(dir, "user.nk", td.decode(user.getSeed()) + "\n", 0o600),
    public_key: pub,
  };
}

// User + password file and token file: secrets without a trailing newline.
function passwordMode(dir) {
  const user = "cim-leaf";
  const password = secret();
  const conf = `authorization {\n  users = [ { user: "${user}", password: "${password}" } ]\n}\n`;
  return {
    conf: write(dir, "password.conf", conf),
    user,
    password_file: write(dir, "password.txt", password, 0o600),
  };
}

function tokenMode(dir) {
  const token = secret();
  return {
    conf: write(dir, "token.conf", `authorization {\n  token: "${token}"\n}\n`),
    token_file: write(dir, "token.txt", token, 0o600),
  };
}

async function freePort() {
  return new Promise((ok, ko) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", ko);
  });
}

// Starts nats-server with conf on a free loopback port; resolves once it
// accepts clients (it logs "Server is ready").
async function natsServer(conf) {
  const port = await freePort();
  const proc = spawn("nats-server", ["-c", conf, "-a", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  await new Promise((ok, ko) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      ko(new Error(`nats-server not ready in 5 s:\n${log}`));
    }, 5000);
    proc.on("error", (e) => { clearTimeout(timer); ko(e); });
    proc.on("exit", (code) => { clearTimeout(timer); ko(new Error(`nats-server exited ${code}:\n${log}`)); });
    proc.stderr.on("data", (d) => {
      log += d;
      if (log.includes("Server is ready")) { clearTimeout(timer); ok(); }
    });
  });
  proc.removeAllListeners("exit");
  return { url: `nats://127.0.0.1:${port}`, stop: () => proc.kill("SIGTERM") };
}

// Connects with opts, round-trips one request through the server.
async function roundTrip(url, opts) {
  const nc = await connect({ servers: url, reconnect: false, timeout: 2000, ...opts });
  try {
    const sub = nc.subscribe("auth.check", { callback: (_e, m) => m.respond(m.data) });
    const r = await nc.request("auth.check", te.encode("hi"), { timeout: 2000 });
    sub.unsubscribe();
    if (td.decode(r.data) !== "hi") throw new Error("echo mismatch");
  } finally {
    await nc.close();
  }
}

async function verify(index) {
  const cases = {
    operator: { authenticator: credsAuthenticator(readFileSync(index.operator.creds)) },
    nkey: { authenticator: nkeyAuthenticator(te.encode(readFileSync(index.nkey.seed_file, "utf8").trim())) },
    password: { user: index.password.user, pass: readFileSync(index.password.password_file, "utf8") },
    token: { authenticator: tokenAuthenticator(readFileSync(index.token.token_file, "utf8")) },
  };
  const results = {};
  for (const [mode, opts] of Object.entries(cases)) {
    const srv = await natsServer(index[mode].conf);
    let problem = null;
    try {
      await roundTrip(srv.url, opts);
    } catch (e) {
      problem = `generated secret rejected: ${e.message}`;
    }
    if (!problem && (await roundTrip(srv.url, {}).then(() => true, () => false))) {
      problem = "server accepted a client without credentials";
    }
    srv.stop(); // before fail(), which exits at once
    if (problem) fail(`${mode}: ${problem}`);
    results[mode] = "ok";
  }
  return results;
}

async function main() {
  const args = process.argv.slice(2);
  const dir = args.find((a) => !a.startsWith("--"));
  if (!dir) fail("usage: node auth.mjs <dir> [--verify]");
  mkdirSync(dir, { recursive: true });
  const index = {
    dir: resolve(dir),
    operator: await operatorMode(dir),
    nkey: nkeyMode(dir),
    password: passwordMode(dir),
    token: tokenMode(dir),
  };
  if (args.includes("--verify")) index.verified = await verify(index);
  process.stdout.write(JSON.stringify(index, null, 2) + "\n");
}

main().catch((err) => fail(err?.stack || String(err)));

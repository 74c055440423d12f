#!/usr/bin/python3
"""A stand-in for natscli (not packaged in Debian) with just the syntax the
scenarios in vm-tests/scenarios use, speaking the NATS text protocol over TCP
with the standard library only. Installed into the test container as `nats`.

    nats [--server URL] [--timeout DUR] sub [--count=N] [--raw] SUBJECT
    nats [--server URL] [--timeout DUR] req [--raw] [--replies=N] SUBJECT BODY
    nats [--server URL] [--timeout DUR] pub SUBJECT BODY
    nats [--server URL] [--timeout DUR] micro ls|info|stats|ping [NAME [ID]]

Output is natscli-like where the scenarios look at it: with --raw only the
payloads, one per line; otherwise natscli's `[#N] Received on "SUBJECT"`
headers. Exit status is 1 on any error or when no reply came, like natscli.
"""
import argparse
import json
import os
import re
import secrets
import socket
import sys
import time

DEFAULT_URL = "nats://127.0.0.1:4222"


def parse_duration(text):
    """natscli durations: 500ms, 5s, 2m (a bare number means seconds)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


class Client:
    def __init__(self, url, timeout):
        m = re.fullmatch(r"(?:nats://)?([^:/]+)(?::(\d+))?/?", url.split(",")[0])
        if not m:
            sys.exit(f"nats: unsupported server URL {url!r}")
        self.sock = socket.create_connection((m.group(1), int(m.group(2) or 4222)), timeout)
        self.buf = b""
        self.sid = 0
        self.pending = []
        self._line()  # INFO {...}
        connect = {"verbose": False, "pedantic": False, "name": "nats-shim", "lang": "python",
                   "version": "0.1", "protocol": 1, "headers": True, "no_responders": True}
        self._send(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        while (line := self._line()) != b"PONG":
            if line.startswith(b"-ERR"):
                sys.exit(f"nats: {line.decode()}")

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        self.sock.settimeout(None if left == float("inf") else max(left, 0.001))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self, deadline=None):
        deadline = deadline or time.monotonic() + 10
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def subscribe(self, subject):
        self.sid += 1
        self._send(f"SUB {subject} {self.sid}\r\n".encode())
        return self.sid

    def publish(self, subject, body, reply=""):
        data = body.encode()
        self._send(f"PUB {subject} {reply} {len(data)}\r\n".encode() + data + b"\r\n")

    def flush(self):
        """Round-trip a PING so that everything sent so far has been processed."""
        self._send(b"PING\r\n")
        while (msg := self.next_message(time.monotonic() + 10, until_pong=True)) is not None:
            self.pending.append(msg)

    def next_message(self, deadline, until_pong=False):
        """Next (subject, reply, headers, payload); None at the deadline or a PONG."""
        if self.pending and not until_pong:
            return self.pending.pop(0)
        try:
            while True:
                line = self._line(deadline)
                op = line.split(b" ", 1)[0]
                if op == b"PING":
                    self._send(b"PONG\r\n")
                elif op == b"PONG" and until_pong:
                    return None
                elif op == b"-ERR":
                    sys.exit(f"nats: {line.decode()}")
                elif op in (b"MSG", b"HMSG"):
                    args = line.decode().split()
                    size = int(args[-1])
                    data = self._exactly(size, deadline)
                    hdr_len = int(args[-2]) if op == b"HMSG" else 0
                    reply = args[3] if len(args) == (6 if op == b"HMSG" else 5) else ""
                    return args[1], reply, data[:hdr_len].decode(), data[hdr_len:].decode(errors="replace")
        except (socket.timeout, TimeoutError):
            return None


def show(index, subject, _reply, headers, payload, raw):
    if not raw:
        print(f'[#{index}] Received on "{subject}"')
        if headers.strip():
            print(headers.strip())
    print(payload + ("" if raw else "\n"), flush=True)


def collect(client, subject, body, count, timeout):
    """Send a request and gather up to count replies (0: all until timeout)."""
    inbox = f"_INBOX.{secrets.token_hex(8)}"
    client.subscribe(inbox)
    client.publish(subject, body, inbox)
    deadline, replies = time.monotonic() + timeout, []
    while count == 0 or len(replies) < count:
        msg = client.next_message(deadline)
        if msg is None:
            break
        if msg[2].startswith("NATS/1.0 503"):
            sys.exit(f"nats: no responders available for request on {subject}")
        replies.append(msg)
    return replies


def cmd_sub(client, args):
    client.subscribe(args.subject)
    client.flush()
    for n in range(1, args.count + 1 if args.count else sys.maxsize):
        msg = client.next_message(float("inf"))
        show(n, *msg, args.raw)


def cmd_pub(client, args):
    client.publish(args.subject, args.body)
    client.flush()


def cmd_req(client, args):
    replies = collect(client, args.subject, args.body, args.replies, args.timeout)
    if not replies:
        sys.exit(f"nats: no reply on {args.subject} within {args.timeout}s")
    for n, msg in enumerate(replies, 1):
        show(n, *msg, args.raw)


def cmd_micro(client, args):
    verb = {"ls": "PING", "list": "PING", "ping": "PING", "info": "INFO", "stats": "STATS"}[args.verb]
    subject = ".".join(["$SRV", verb] + args.names)
    replies = [json.loads(payload) for _, _, _, payload in collect(client, subject, "", 0, args.timeout)]
    if not replies:
        sys.exit(f"nats: no micro services found on {subject}")
    if args.json:
        print(json.dumps(replies if len(replies) > 1 else replies[0], indent=2))
    elif verb == "PING":
        print(f"{'Name':<20} {'Version':<10} {'ID':<24} Description")
        for r in sorted(replies, key=lambda r: (r.get("name"), r.get("id"))):
            print(f"{r.get('name', ''):<20} {r.get('version', ''):<10} {r.get('id', ''):<24} "
                  f"{r.get('description', '')}")
    else:
        for r in replies:
            print(f"Service Information\n\n  Service: {r.get('name')} ({r.get('id')})\n"
                  f"  Version: {r.get('version')}\n  Description: {r.get('description', '')}\n")
            for ep in r.get("endpoints", []):
                print(f"  Endpoint: {ep.get('name')}\n    Subject: {ep.get('subject')}\n"
                      f"    Queue Group: {ep.get('queue_group', '')}\n"
                      f"    Requests: {ep.get('num_requests', '')}  Errors: {ep.get('num_errors', '')}")
            print(f"  Metadata: {json.dumps(r.get('metadata', {}))}\n")


def main(argv):
    # natscli accepts its global flags before and after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-s", "--server", default=argparse.SUPPRESS)
    common.add_argument("--timeout", type=parse_duration, default=argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="nats", parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sub", aliases=["subscribe"], parents=[common])
    s.add_argument("--count", type=int, default=0)
    s.add_argument("--raw", "-r", action="store_true")
    s.add_argument("subject")
    s.set_defaults(run=cmd_sub)

    s = sub.add_parser("pub", aliases=["publish"], parents=[common])
    s.add_argument("subject")
    s.add_argument("body", nargs="?", default="")
    s.set_defaults(run=cmd_pub)

    s = sub.add_parser("req", aliases=["request"], parents=[common])
    s.add_argument("--raw", "-r", action="store_true")
    s.add_argument("--replies", type=int, default=1)
    s.add_argument("subject")
    s.add_argument("body", nargs="?", default="")
    s.set_defaults(run=cmd_req)

    s = sub.add_parser("micro", aliases=["m"], parents=[common])
    s.add_argument("verb", choices=["ls", "list", "info", "stats", "ping"])
    s.add_argument("names", nargs="*", help="service name and optional instance id")
    s.add_argument("--json", "-j", action="store_true")
    s.set_defaults(run=cmd_micro)

    args = p.parse_args(argv)
    # Defaults here: the parsers share the SUPPRESS-default actions of common.
    args.server = getattr(args, "server", os.environ.get("NATS_URL", DEFAULT_URL))
    args.timeout = getattr(args, "timeout", 5.0)
    try:
        args.run(Client(args.server, args.timeout), args)
    except (OSError, ConnectionError) as e:
        sys.exit(f"nats: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])

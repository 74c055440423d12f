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
The protocol is tests/lib/nats_client.py, installed beside this file.
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "lib")]  # in the container / in the repository

from nats_client import Client, NatsError  # noqa: E402

DEFAULT_URL = "nats://127.0.0.1:4222"
FOREVER = 365 * 24 * 3600.0  # natscli's sub waits until it has its count


def parse_duration(text):
    """natscli durations: 500ms, 5s, 2m (a bare number means seconds)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def show(index, msg, raw):
    if not raw:
        print(f'[#{index}] Received on "{msg.subject}"')
        if msg.raw_headers:
            print(msg.raw_headers)
    print(msg.data.decode(errors="replace") + ("" if raw else "\n"), flush=True)


def collect(client, subject, body, count, timeout):
    """Send a request and gather up to count replies (0: all until timeout)."""
    replies = client.gather(subject, body, wait=timeout, expect=count or None)
    if any(msg.headers.get("Status") == "503" for msg in replies):
        sys.exit(f"nats: no responders available for request on {subject}")
    return replies


def cmd_sub(client, args):
    client.subscribe(args.subject)
    for n in range(1, args.count + 1 if args.count else sys.maxsize):
        show(n, client.next_msg(timeout=FOREVER), args.raw)


def cmd_pub(client, args):
    client.publish(args.subject, args.body)
    client.flush()


def cmd_req(client, args):
    replies = collect(client, args.subject, args.body, args.replies, args.timeout)
    if not replies:
        sys.exit(f"nats: no reply on {args.subject} within {args.timeout}s")
    for n, msg in enumerate(replies, 1):
        show(n, msg, args.raw)


def cmd_micro(client, args):
    verb = {"ls": "PING", "list": "PING", "ping": "PING", "info": "INFO", "stats": "STATS"}[args.verb]
    subject = ".".join(["$SRV", verb] + args.names)
    replies = [msg.json() for msg in collect(client, subject, "", 0, args.timeout)]
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
        args.run(Client.from_url(args.server, args.timeout), args)
    except (OSError, NatsError) as e:
        sys.exit(f"nats: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])

# Shared helpers of the cim-leaf scenarios. One script, two drivers: the NixOS
# VM tests run `lib.py + <scenario>.py + call` as their testScript, and
# tests/system runs the very same text against a systemd-nspawn container
# through a stand-in for the driver's Machine API. So: only the Machine API
# (succeed, fail, execute, wait_*, systemctl, start, log), natscli syntax
# that tests/system/nats_shim.py also speaks, commands present on NixOS and
# Debian alike, and imports used here (pyflakes runs on the NixOS side).
#
# Every step takes the machine(s) and keyword options and first brings the
# system to the known good state, so a step can also run on its own.
import base64
import contextlib
import datetime
import json
import re
import time

LEAF = "cim-leaf.service"
BUS_OBJECT = "org.cim.Leaf1 /org/cim/Leaf1 org.cim.Leaf1"
NATS_PORT = 4222
NATS_URL = f"nats://127.0.0.1:{NATS_PORT}"
# The daemon's default events.stream.name.
EVENTS_STREAM = "CIM_LEAF_EVENTS"
# An unprivileged caller for the D-Bus policy checks.
AS_NOBODY = "setpriv --reuid=nobody --regid=nogroup --clear-groups"


def nats(args, server=NATS_URL):
    """A natscli command line; stdin closed, or `nats req` may read a body from it."""
    return f"nats --server {server} {args} </dev/null"


def parse_json_stream(text):
    """All JSON values in text, however they are split across lines."""
    decoder, pos = json.JSONDecoder(), 0
    values: list = []
    while True:
        start = text.find("{", pos)
        if start < 0:
            return values
        value, pos = decoder.raw_decode(text, start)
        values.append(value)


def timespan_s(text):
    """Seconds in a systemd time span as `systemctl show` prints it: "1min 30s", "500ms"."""
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    return sum(float(n) * scale[unit] for n, unit in re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|min|h)\b", text))


def unit_property(machine, name, unit=LEAF):
    return machine.succeed(f"systemctl show -p {name} --value {unit}").strip()


def bus_property(machine, name, as_nobody=False):
    prefix = AS_NOBODY + " " if as_nobody else ""
    out = machine.succeed(f"{prefix}busctl --system --json=short get-property {BUS_OBJECT} {name}")
    return json.loads(out)["data"]


def bus_call(machine, method, as_nobody=False):
    prefix = AS_NOBODY + " " if as_nobody else ""
    return machine.succeed(f"{prefix}busctl --system --json=short call {BUS_OBJECT} {method}")


def health(machine, as_nobody=False):
    """The daemon's health JSON over D-Bus, which answers with NATS down too."""
    return json.loads(json.loads(bus_call(machine, "GetHealth", as_nobody))["data"][0])


def wait_for_pending(machine, count, timeout=60):
    """Until EventsPending (events not yet acknowledged by the stream) is count."""
    machine.wait_until_succeeds(
        f"busctl --system get-property {BUS_OBJECT} EventsPending | grep -qx 't {count}'", timeout=timeout)


def wait_for_state(machine, state, timeout=60):
    machine.wait_until_succeeds(
        f"busctl --system get-property {BUS_OBJECT} State | grep -qx 's \"{state}\"'", timeout=timeout)


def heartbeats(machine, node, count=1, within=30, server=NATS_URL):
    """The next `count` heartbeats of node, or fail after `within` seconds."""
    out = machine.succeed(
        f"timeout {within} " + nats(f"sub --raw --count={count} 'cim.leaf.{node}.heartbeat'", server))
    beats = parse_json_stream(out)
    assert len(beats) == count, f"expected {count} heartbeats, got {out!r}"
    for beat in beats:
        assert beat["type"] == "io.cim.leaf.v1.heartbeat" and beat["node"] == node, beat
    return beats


def stream_messages(machine, stream=EVENTS_STREAM, server=NATS_URL):
    """Every message of a JetStream stream, oldest first, as (subject, headers,
    JSON payload), read through the JetStream API with `nats req`."""
    info = nats(f"req --raw '$JS.API.STREAM.INFO.{stream}' ''", server)
    (reply,) = parse_json_stream(machine.succeed(info))
    assert "error" not in reply, f"stream {stream}: {reply}"
    state = reply["state"]
    if state["messages"] == 0:
        return []
    get = nats(f"""req --raw '$JS.API.STREAM.MSG.GET.{stream}' '{{"seq":'$n'}}'""", server)
    replies = parse_json_stream(machine.succeed(f"for n in $(seq {state['first_seq']} {state['last_seq']}); do {get}; done"))
    messages = []
    for reply in replies:
        assert "error" not in reply, f"stream {stream}: {reply}"
        message = reply["message"]
        # "NATS/1.0\r\nName: value\r\n...\r\n\r\n"
        lines = base64.b64decode(message.get("hdrs", "")).decode().split("\r\n")[1:]
        headers = dict((name, value.strip()) for name, _, value in (line.partition(":") for line in lines if line))
        messages.append((message["subject"], headers, json.loads(base64.b64decode(message["data"]))))
    return messages


def capture_event(machine, node, event, path):
    """Start listening for one event in the background; read it with read_event."""
    machine.succeed(f"rm -f {path}; (timeout 60 "
                    + nats(f"sub --raw --count=1 'cim.leaf.{node}.events.{event}'")
                    + f" >{path} 2>&1 &)")
    time.sleep(1)  # the subscription must be in place before the event


def read_event(machine, path, event):
    machine.wait_until_succeeds(f"grep -q event_type {path}", timeout=30)
    (payload,) = parse_json_stream(machine.succeed(f"cat {path}"))
    assert payload["event_type"] == event, payload
    return payload


def nats_health(machine, node):
    """The node's health JSON, asked on NATS."""
    (reply,) = parse_json_stream(machine.succeed(nats(f"req --raw cim.leaf.{node}.health ''")))
    assert reply["type"] == "io.cim.leaf.v1.health" and reply["node"] == node, reply
    return reply


@contextlib.contextmanager
def recording_events(machine, node, path):
    """Every event of node published inside the block, recorded into path on
    machine; read them with recorded_events or wait_for_event."""
    machine.succeed(f"rm -f {path}; (" + nats(f"sub --raw 'cim.leaf.{node}.events.>'")
                    + f" >{path} 2>&1 & echo $! >{path}.pid)")
    time.sleep(1)  # the subscription must be in place before the first event
    try:
        yield path
    finally:
        machine.execute(f"kill $(cat {path}.pid); rm -f {path}.pid")


def recorded_events(machine, path):
    return [payload for payload in parse_json_stream(machine.succeed(f"cat {path}")) if "event_type" in payload]


def wait_for_event(machine, path, event, timeout, **data):
    """The first recorded `event` whose data has these values, within timeout
    seconds (an AssertionError naming what came instead if none)."""
    deadline = time.monotonic() + timeout
    while True:
        events = recorded_events(machine, path)
        for payload in events:
            if payload["event_type"] == event and all(payload["data"].get(k) == v for k, v in data.items()):
                return payload
        seen = [(payload["event_type"], payload["data"]) for payload in events]
        assert time.monotonic() < deadline, f"no {event} with {data} within {timeout} s; recorded: {seen}"
        time.sleep(0.2)


def eventually(read, until, what, timeout=5):
    """read()'s value once until(value) holds; after timeout seconds an
    AssertionError with the last value (so that a missing feature reads as
    a failed assertion, not as a broken machine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s; last: {value!r}"
        time.sleep(0.2)


def kill_unit(machine, unit):
    """SIGKILL to the unit's main process: an abnormal stop, not a systemctl
    stop. The machine's time (s since the epoch) right after. Main only: on
    systemd 252 in a container, signalling the rest of the cgroup can fail
    with EIO although the main process got it."""
    return float(machine.succeed(f"systemctl kill --kill-whom=main -s KILL {unit} && date +%s.%N"))


def rfc3339_s(text):
    """Seconds since the epoch of an RFC 3339 UTC time as the daemon writes it."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_connected_status(text):
    # "disconnected" must not count, hence the word boundary.
    return re.search(r"\bconnected\b", text, re.I) is not None


def ensure_up(machine, nats_unit):
    """NATS running, the daemon running and connected."""
    machine.start()
    machine.wait_for_unit("multi-user.target", timeout=300)
    machine.succeed(f"systemctl start {nats_unit}")
    machine.wait_for_open_port(NATS_PORT, "127.0.0.1", timeout=60)
    if unit_property(machine, "ActiveState") == "failed":
        machine.succeed(f"systemctl reset-failed {LEAF}")
    machine.succeed(f"systemctl start {LEAF}")
    wait_for_state(machine, "connected")
    return bus_property(machine, "NodeId")


def run_steps(target, steps, **options):
    for step in steps:
        first = target[0] if isinstance(target, list) else target
        first.log(f"=== {step.__name__}: {(step.__doc__ or '').strip().splitlines()[0]}")
        step(target, **options)

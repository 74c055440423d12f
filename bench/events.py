"""Events through the acknowledged path (a JetStream stream, each event
acknowledged by a PubAck before the next is sent) against plain publishes
(events.delivery: core), on one nats-server with JetStream, in rounds that
alternate the two and swap their order; and the spool's write cost per
event (spool-bench). Run by measure.py; prints medians of paired ratios
with their min-max, asserts nothing but that the stream holds every event
exactly once.

The backlog is made once per run by a daemon running with the server down:
2 events per reload (SIGHUP, then its READY=1), after which it is killed.
Each measured daemon starts on a copy of that spool with the server down,
and the clock starts with the server: the daemon takes the same path as
after a reconnect (the new connection, the stream looked up, the pending
events sent in order). Making a backlog for every measurement would cost
an fdatasync per event, minutes per run.
"""
import json
import os
import shutil
import subprocess
import sys
import time

from common import NatsServer, Notified, file_system, free_port, paired, print_table, spread

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
from nats_client import Client, NatsError  # noqa: E402  (the tests' independent client)

NODE = "bench"
STREAM = "CIM_LEAF_EVENTS"
VARIANTS = ("jetstream", "core")
DAY_NS = 86400 * 10**9

CONFIG = """\
node: {{id: {node}}}
nats:
  servers: [{url}]
  reconnect: {{wait: 50ms, jitter: 0ms}}  # the daemon's retry timer adds 0-50 ms by chance
dbus: {{bus: none}}
heartbeat: {{interval: 5s}}
log: {{level: info}}
events: {{delivery: {delivery}}}
"""


def wait_for(what, predicate, timeout, interval=0.005):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout} s")
        time.sleep(interval)
    return value


def api(client, verb, body=None):
    """A JetStream API request; the answer, or RuntimeError with its description."""
    reply = client.request(f"$JS.API.{verb}", json.dumps(body or {}).encode(), timeout=5).json()
    if "error" in reply:
        raise RuntimeError(f"$JS.API.{verb}: {reply['error'].get('description', reply['error'])}")
    return reply


def fresh_stream(port):
    """The stream the daemon would create, empty: every run re-sends the same
    event ids, which a stream that remembers them would drop as duplicates."""
    with Client(port) as client:
        try:
            api(client, f"STREAM.DELETE.{STREAM}")
        except RuntimeError as error:
            if "not found" not in str(error):
                raise
        api(client, f"STREAM.CREATE.{STREAM}", {
            "name": STREAM, "subjects": ["cim.leaf.*.events.>"], "retention": "limits", "storage": "file",
            "discard": "old", "num_replicas": 1, "max_age": 30 * DAY_NS, "max_bytes": 256 << 20,
            "duplicate_window": 2 * 3600 * 10**9})


def stream_messages(port):
    with Client(port) as client:
        return api(client, f"STREAM.INFO.{STREAM}")["state"]["messages"]


def read_stream(port, count):
    """[(stored at, ns since the epoch; event; headers)] of the whole stream,
    in stream order, through an ephemeral push consumer."""
    with Client(port, timeout=10) as client:
        client.subscribe("bench.read")
        api(client, f"CONSUMER.CREATE.{STREAM}", {"stream_name": STREAM, "config": {
            "deliver_subject": "bench.read", "ack_policy": "none", "deliver_policy": "all"}})
        # Delivered with their own subjects (some already while the API
        # answered: next_msg takes those first); the reply subject
        # $JS.ACK.<stream>.<consumer>.<n>.<sseq>.<cseq>.<stored ns>.<left> tells them apart.
        stored = []
        while len(stored) < count:
            if (m := client.next_msg(10)).reply.startswith("$JS.ACK."):
                stored.append(m)
    return [(int(m.reply.split(".")[-2]), m.json(), m.headers) for m in stored]


def check_exactly_once(messages, first_seq):
    """Every event once, in seq order from first_seq, each under its own id;
    else RuntimeError saying where the stream differs."""
    seqs = [event["seq"] for _, event, _ in messages]
    expected = list(range(first_seq, first_seq + len(seqs)))
    if seqs != expected:
        at = next(i for i, (got, want) in enumerate(zip(seqs, expected)) if got != want)
        twice = len(seqs) - len(set(seqs))
        missing = len(set(expected) - set(seqs))
        raise RuntimeError(f"the stream's {len(seqs)} events are not seq {first_seq}..{expected[-1]} once each in "
                           f"order: {twice} seqs twice, {missing} missing; stream position {at + 1} holds seq "
                           f"{seqs[at]} where {expected[at]} belongs ({seqs[max(at - 3, 0):at + 4]})")
    ids = {headers.get("Nats-Msg-Id") for _, _, headers in messages}
    if ids != {event["event_id"] for _, event, _ in messages} or len(ids) != len(messages):
        raise RuntimeError("an event is in the stream twice, or under another Nats-Msg-Id")


class Health:
    """checks.events of the daemon's health, asked over NATS; None while it
    cannot answer (the server is down, or the daemon not subscribed yet)."""

    def __init__(self, port):
        self.port, self.client = port, None

    def events(self):
        try:
            if self.client is None:
                self.client = Client(self.port, timeout=1)
            return json.loads(self.client.request(f"cim.leaf.{NODE}.health", timeout=1).data)["checks"]["events"]
        except (OSError, TimeoutError, NatsError):
            self.close()
            return None

    def close(self):
        if self.client:
            self.client.close()
            self.client = None


def wait_delivered(health, delivery, timeout):
    """Waits until health says nothing is pending, in `delivery` mode."""
    def done():
        events = health.events()
        return events if events and events["delivery"] == delivery and events["pending"] == 0 else None
    return wait_for(f"checks.events.pending == 0 ({delivery})", done, timeout)


def start_daemon(args, tmp, name, server, delivery, state, ready_timeout=10):
    config = os.path.join(tmp, f"{name}.yaml")
    with open(config, "w") as f:
        f.write(CONFIG.format(node=NODE, url=server.url, delivery=delivery))
    return Notified([args.daemon, "--config", config], tmp, os.path.join(tmp, f"{name}.log"),
                    env={"STATE_DIRECTORY": state}, ready_timeout=ready_timeout)


def log_has(path, text):
    with open(path) as f:
        return text in f.read()


def make_backlog(args, tmp, server):
    """A spool of args.backlog events left by a daemon that recorded them
    while the server was down. (its path, events/s it was recorded at)."""
    state = os.path.join(tmp, "backlog-state")
    os.mkdir(state)
    server.start()
    daemon = start_daemon(args, tmp, "backlog", server, "jetstream", state)
    try:
        if daemon.ready_ms is None:
            raise RuntimeError(f"the backlog daemon did not start, see {tmp}/backlog.log")
        health = Health(server.port)
        wait_delivered(health, "jetstream", 10)  # started, ready
        health.close()
        server.stop()
        wait_for("disconnection", lambda: log_has(os.path.join(tmp, "backlog.log"), "reconnecting"), 10)
        start = time.monotonic()
        for _ in range(args.backlog // 2):
            daemon.reload()  # reloading, reloaded: both fsync'd before READY=1
        rate = args.backlog // 2 * 2 / (time.monotonic() - start)
        daemon.proc.kill()  # exactly the reloads' events stay pending (SIGTERM would add `stopping`)
        daemon.proc.wait()
    finally:
        daemon.stop()
    return os.path.join(state, "events.spool"), rate


def measure(args, tmp, server, spool, delivery, run):
    """One daemon on a copy of the backlog: the server starts, the backlog
    drains; then live reloads. The figures of this run."""
    backlog = args.backlog // 2 * 2
    state = os.path.join(tmp, f"state-{run}")
    os.mkdir(state)
    shutil.copy(spool, state)
    server.start()
    fresh_stream(server.port)
    server.stop()

    name = f"{run}-{delivery}"
    daemon = start_daemon(args, tmp, name, server, delivery, state, ready_timeout=0)
    health = Health(server.port)
    try:
        wait_for("spool read at start", lambda: log_has(os.path.join(tmp, f"{name}.log"), "from the last run"), 10)
        t0 = time.time_ns()
        server.start()
        wait_delivered(health, delivery, 120)
        acked = time.time_ns()
        # The backlog, then the new daemon's `started` and `ready`.
        wait_for("the backlog in the stream", lambda: stream_messages(server.port) >= backlog + 2, 10, 0.02)

        live = time.time_ns()
        for _ in range(args.live):
            daemon.reload()
        wait_delivered(health, delivery, 60)
        total = backlog + 2 + 2 * args.live
        wait_for("the live events in the stream", lambda: stream_messages(server.port) >= total, 10, 0.02)
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited, see {tmp}/{name}.log")
    finally:
        health.close()
        daemon.stop()
        shutil.rmtree(state)

    # SIGTERM added `stopping`, sent (and in jetstream acknowledged) before the exit.
    count = stream_messages(server.port)
    if count != total + 1:
        raise RuntimeError(f"the stream holds {count} events, not {total + 1}; see {tmp}/{name}.log")
    messages = read_stream(server.port, count)
    server.stop()  # the next run starts with the server down
    try:
        check_exactly_once(messages, 3)  # the backlog daemon's started and ready (1, 2) went before the outage
    except RuntimeError as error:
        raise RuntimeError(f"{delivery}, round {run}: {error}; see {tmp}/{name}.log") from None
    if messages[-1][1]["event_type"] != "stopping":
        raise RuntimeError(f"the last event in the stream is {messages[-1][1]['event_type']}, not stopping")
    stored = [ns for ns, _, _ in messages]
    return {
        "drain_events_per_s": (backlog - 1) / ((stored[backlog - 1] - stored[0]) / 1e9),
        "first_stored_ms": (stored[0] - t0) / 1e6,
        "all_stored_ms": (stored[backlog - 1] - t0) / 1e6,
        "acknowledged_ms": (acked - t0) / 1e6,
        "live_events_per_s": 2 * args.live / ((stored[total - 1] - live) / 1e9),
    }


# (key, label, format, whether a ratio means something)
ROWS = [
    ("drain_events_per_s", "backlog drain (events/s)", "{:.0f}", True),
    # Mostly where the server's start fell in the daemon's 50 ms retry timer.
    ("first_stored_ms", "server start to first event stored (ms)", "{:.0f}", False),
    ("all_stored_ms", "server start to backlog stored (ms)", "{:.0f}", True),
    ("acknowledged_ms", "server start to health pending 0 (ms)", "{:.0f}", True),
    ("live_events_per_s", "live reloads, sent to stored (events/s)", "{:.0f}", True),
]


def run(args, tmp):
    """The events benchmark; its results (per variant, a list of runs)."""
    server = NatsServer(free_port(), os.path.join(tmp, "nats-events.log"), store=os.path.join(tmp, "jetstream"))
    spool, recorded = make_backlog(args, tmp, server)
    print(f"events: spools in {tmp} ({file_system(tmp)}); backlog of {args.backlog // 2 * 2} spooled by reloads "
          "with the server down "
          f"({recorded:.0f} events/s recorded); {args.rounds} rounds, each variant once, order swapped "
          f"every round; then {args.live} reloads live", flush=True)
    results = {variant: [] for variant in VARIANTS}
    try:
        for round_ in range(args.rounds):
            for delivery in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                results[delivery].append(measure(args, tmp, server, spool, delivery, f"r{round_}"))
    finally:
        if server.proc.poll() is None:
            server.kill()
    return {"recorded_events_per_s": recorded, **results}


def table(results):
    jetstream, core = results["jetstream"], results["core"]
    lines = [("metric", "jetstream", "core", "ratio", "min-max")]
    for key, label, fmt, compared in ROWS:
        j, c = [r[key] for r in jetstream], [r[key] for r in core]
        ratio, low, high = paired(j, c)
        lines.append((label, fmt.format(spread(j)[0]), fmt.format(spread(c)[0]),
                      f"{ratio:.2f}" if compared else "-", f"{low:.2f}-{high:.2f}" if compared else "-"))
    print_table(lines)


SPOOL_ROWS = [
    ("write_us", "write, no fsync"),
    ("write_fdatasync_us", "write + fdatasync"),
    ("append_us", "Spool::append + sync"),
    ("append_acknowledge_us", "Spool::append + sync + acknowledge"),
    ("burst_us", "burst with the Syncer, to disk"),
    ("burst_loop_us", "  of which on the loop"),
]


def run_spool(args, tmp):
    """spool-bench, args.rounds times, every other run with the Spool first."""
    print(f"spool: {args.rounds} runs of {args.spool_events} events in {tmp} ({file_system(tmp)}), "
          "the Spool first every other run", flush=True)
    runs = []
    for round_ in range(args.rounds):
        command = [args.spool_bench, "-j", "-n", str(args.spool_events), *(["-r"] if round_ % 2 else []), tmp]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
        runs.append(json.loads(result.stdout))
    return runs


def spool_table(runs):
    lines = [("per event", "us", "min-max", "ratio", "min-max")]
    write = [r["write_us"] for r in runs]
    for key, label in SPOOL_ROWS:
        values = [r[key] for r in runs]
        us, low, high = spread(values)
        ratio, rlow, rhigh = paired(values, write)
        lines.append((label, f"{us:.1f}", f"{low:.1f}-{high:.1f}", f"{ratio:.0f}", f"{rlow:.0f}-{rhigh:.0f}"))
    print_table(lines)
    ms, low, high = spread([r["open_ms"] for r in runs])
    syncs, fewest, most = spread([r["burst_fdatasyncs"] for r in runs])
    print(f"fdatasyncs for a burst of {runs[0]['events']}: {syncs:.0f} ({fewest:.0f}-{most:.0f})")
    print(f"open with {runs[0]['events']} pending (read, rewrite): {ms:.1f} ms ({low:.1f}-{high:.1f})")

"""A fleet on this one machine (bench/run.sh --only fleet): one hub
nats-server (a leafnode port, JetStream in domain `hub`, a stream
CIM_FLEET_EVENTS sourcing every leaf's CIM_LEAF_EVENTS across domains) and
N leaves, each a nats-server that is a leaf node of the hub (JetStream in
its own domain = node id, monitoring on the loopback) with a cim-leaf
daemon on it (no D-Bus, its own STATE_DIRECTORY, the uplink watched), as
tests/lib/topology.py and README's "The uplink" set them up.

In each round the hub is killed (SIGKILL), every daemon makes events while
it is away (one reload each, after its uplink_lost), and the hub is started
again. Measured from the hub's start: when it sees all N leaf nodes (its
/varz), when every daemon says its uplink is up (the `since` of
checks.uplink in the answers to the fan-out cim.leaf.health on the hub),
when every leaf's events are in the hub's stream (its message count against
the sum of the leaves' streams), the leaf node connections a second (the
hub's own log: every "Leafnode connection created" is timestamped to the
microsecond by the server, which polling /varz or /leafz could only
approximate), why the hub closed leaf node connections again (its log),
and the hub's CPU (/proc/<pid>/stat) and peak memory (VmHWM). Once, after
the start: each process's memory (Rss, Pss), open files and subscriptions,
which say what limits N on this machine.

A figure generator: nothing is asserted about the figures; a round fails
only when the hub's stream does not end with every leaf's events exactly
once (counted per node), since figures of a lossy run would mean nothing.
Every process it starts is ended when it ends, by Ctrl-C, SIGTERM or an
error too, and dies with it if it is killed (setpriv --pdeathsig).
"""
import collections
import datetime
import itertools
import json
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.request

from common import Notified, memory_kib, print_table, spread
from events import wait_for
from nats_client import Client, NatsError

HUB = "hub"
STREAM = "CIM_LEAF_EVENTS"
AGGREGATE = "CIM_FLEET_EVENTS"
BATCH = 25  # processes started at once: a start costs CPU, and this machine has 2 cores
IDLE_S = 10  # the hub's idle CPU, with every leaf connected, is sampled this long
ORPHAN_GUARD = ["setpriv", "--pdeathsig", "KILL", "--"]  # dies with this runner, even by SIGKILL
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

HUB_CONFIG = """\
listen: 127.0.0.1:{port}
server_name: hub
http: 127.0.0.1:{http}
leafnodes {{ listen: 127.0.0.1:{leafnode_port} }}
jetstream {{ store_dir: "{store}", domain: hub }}
"""

# The leafnode reconnect interval is nats-server's default (1 s), as the NixOS module leaves it.
LEAF_CONFIG = """\
listen: 127.0.0.1:{port}
server_name: {node}
http: 127.0.0.1:{http}
leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{leafnode_port}" }} ] }}
jetstream {{ store_dir: "{store}", domain: {node} }}
"""

# subjects: this-node, because with all-nodes (the default) each leaf's stream
# would also store every other leaf's events, which reach it through the hub.
DAEMON_CONFIG = """\
node: {{id: {node}}}
nats:
  servers: [nats://127.0.0.1:{port}]
  reconnect: {{wait: 250ms, jitter: 100ms}}
dbus: {{bus: none}}
heartbeat: {{interval: 5s}}
log: {{level: info}}
events: {{stream: {{domain: {node}, subjects: this-node}}}}
uplink: {{monitor_url: "http://127.0.0.1:{http}", interval: {interval}}}
"""


class Ports:
    """Loopback ports below the kernel's ephemeral range, so that none of the
    thousands of connections made meanwhile (leaf nodes, monitoring polls)
    can hold a port a server is about to listen on; from a random base, so
    that another fleet on the machine starts elsewhere."""

    def __init__(self, count):
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            self.limit = int(f.read().split()[0])
        if self.limit - 10000 < 2 * count:
            raise RuntimeError(f"not enough ports below the ephemeral range ({self.limit}) for {count}")
        self.next = random.randrange(10000, self.limit - 2 * count)

    def take(self):
        while self.next < self.limit:
            port, self.next = self.next, self.next + 1
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue
        raise RuntimeError(f"no free port left below {self.limit}")


class Server:
    """A nats-server from its own config file; `log` names its log file, so
    that each start of the hub writes its own."""

    def __init__(self, tmp, name, config, port):
        self.name, self.port, self.proc, self.tmp = name, port, None, tmp
        self.conf = os.path.join(tmp, f"{name}.conf")
        with open(self.conf, "w") as f:
            f.write(config)

    def spawn(self, log_name=None):
        self.log = os.path.join(self.tmp, f"nats-{log_name or self.name}.log")
        self.proc = subprocess.Popen([*ORPHAN_GUARD, "nats-server", "-c", self.conf, "-l", self.log],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"nats-server {self.name} exited with {self.proc.returncode}, see {self.log}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None


def varz(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=timeout) as answer:
        return json.load(answer)


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def peak_rss_mib(pid):
    """VmHWM: the most the process ever held resident."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


BASES = itertools.count(10**6, 10**6)


def connect(port, timeout=5.0):
    """A test client whose inboxes (_INBOX.test.<sid>) no other client of this
    process shares: the pollers ask the hub at the same time."""
    client = Client(port, timeout=timeout)
    client.sids = itertools.count(next(BASES))
    return client


def api(client, domain, verb, body=None, timeout=5):
    reply = client.request(f"$JS.{domain}.API.{verb}", json.dumps(body or {}).encode(), timeout=timeout).json()
    if "error" in reply:
        raise RuntimeError(f"$JS.{domain}.API.{verb}: {reply['error'].get('description', reply['error'])}")
    return reply


def leaf_stream(client, node, body=None, attempts=3):
    """STREAM.INFO of a leaf's stream through the hub; asked again when no
    answer came in time (the machine is busy after a storm)."""
    for attempt in range(attempts):
        try:
            return api(client, node, f"STREAM.INFO.{STREAM}", body)
        except (TimeoutError, NatsError):
            if attempt == attempts - 1:
                raise RuntimeError(f"{node}: no answer to STREAM.INFO through the hub, {attempts} times in 5 s")


def parse_time(rfc3339):
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


LOG_LINE = re.compile(rb"^\[\d+\] (\S+ \S+) \[[A-Z]+\] (.*)")


def logged(log, text):
    """When the server logged each line holding `text` (s since the epoch; its
    log's time stamps are local time, to the microsecond)."""
    with open(log, "rb") as f:
        return [datetime.datetime.strptime(m.group(1).decode(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                for line in f if (m := LOG_LINE.match(line)) and text in m.group(2)]


def close_reasons(log):
    """{reason: count} of the leaf node connections the server logged closed."""
    reasons = collections.Counter()
    with open(log, "rb") as f:
        for line in f:
            if (m := LOG_LINE.match(line)) and b"Leafnode connection closed: " in m.group(2):
                reason = m.group(2).split(b"connection closed: ", 1)[1].split(b" account:", 1)[0]
                reasons[reason.decode(errors="replace").strip()] += 1
    return dict(reasons)


def peak_per_second(times):
    """The most of `times` within any one second."""
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= 1:
            first += 1
        best = max(best, last - first + 1)
    return best


def unless_busy(ask):
    """ask(), or None when the hub did not answer in time: it is still starting,
    or the machine is too busy (TimeoutError is an OSError)."""
    try:
        return ask()
    except (OSError, NatsError, RuntimeError, ValueError):
        return None


class Poller(threading.Thread):
    """Calls `sample` every `interval` s until stopped; keeps (time, value) of each answer."""

    def __init__(self, sample, interval):
        super().__init__(daemon=True)
        self.sample, self.interval, self.samples = sample, interval, []
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            if (value := unless_busy(self.sample)) is not None:
                self.samples.append((time.time(), value))
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(10)

    def first(self, predicate):
        return next((t for t, value in self.samples if predicate(value)), None)


class Fleet:
    """The hub, N leaf servers and N daemons; `close` ends every one of them."""

    def __init__(self, args, tmp):
        self.args, self.tmp, self.n = args, tmp, args.leaves
        self.ports = Ports(2 * self.n + 3)
        self.nodes = [f"leaf-{i:04d}" for i in range(1, self.n + 1)]
        hub_ports = dict(port=self.ports.take(), http=self.ports.take(), leafnode_port=self.ports.take())
        self.hub_http = hub_ports["http"]
        self.hub = Server(tmp, HUB, HUB_CONFIG.format(store=os.path.join(tmp, "js-hub"), **hub_ports),
                          hub_ports["port"])
        self.leaves, self.daemons = [], []
        for node in self.nodes:
            ports = dict(port=self.ports.take(), http=self.ports.take())
            self.leaves.append((Server(tmp, node, LEAF_CONFIG.format(
                node=node, store=os.path.join(tmp, f"js-{node}"),
                leafnode_port=hub_ports["leafnode_port"], **ports), ports["port"]), ports))

    def servers(self):
        return [self.hub] + [server for server, _ in self.leaves]

    def start(self):
        """Everything up: the hub, the leaf servers, the daemons, each batch
        waited for; then every uplink up and the aggregate stream caught up."""
        self.hub.spawn("hub-start")
        wait_for("the hub listening", self.hub.listening, 10)
        for first in range(0, self.n, BATCH):
            batch = [server for server, _ in self.leaves[first:first + BATCH]]
            for server in batch:
                server.spawn()
            wait_for(f"leaf servers {first + 1}-{first + len(batch)} listening",
                     lambda: all(server.listening() for server in batch), 30)
        for first in range(0, self.n, BATCH):
            batch = []
            for node, (_, ports) in zip(self.nodes[first:first + BATCH], self.leaves[first:first + BATCH]):
                config = os.path.join(self.tmp, f"{node}.yaml")
                with open(config, "w") as f:
                    f.write(DAEMON_CONFIG.format(node=node, interval=self.args.uplink_interval, **ports))
                state = os.path.join(self.tmp, f"state-{node}")
                os.mkdir(state)
                batch.append(Notified([*ORPHAN_GUARD, self.args.daemon, "--config", config], self.tmp,
                                      os.path.join(self.tmp, f"{node}.log"),
                                      env={"STATE_DIRECTORY": state}, ready_timeout=0))
                self.daemons.append(batch[-1])
            for node, daemon in zip(self.nodes[first:], batch):
                if not daemon.ready.wait(30):
                    raise RuntimeError(f"daemon {node}: no READY=1 within 30 s, see {self.tmp}/{node}.log")
        self.wait_healthy("every uplink up after the start", 60)
        with connect(self.hub.port) as client:
            api(client, HUB, f"STREAM.CREATE.{AGGREGATE}", timeout=30, body={
                "name": AGGREGATE, "storage": "file", "retention": "limits",
                "sources": [{"name": STREAM, "external": {"api": f"$JS.{node}.API", "deliver": ""}}
                            for node in self.nodes]})
        target = self.leaf_events()
        wait_for("the hub's stream caught up after the start", lambda: (unless_busy(self.aggregated) or 0) >= target,
                 120, 0.25)

    def health(self, wait=1.0):
        """The fan-out cim.leaf.health on the hub: {node: answer}."""
        with connect(self.hub.port, 2) as client:
            replies = client.gather("cim.leaf.health", wait=wait, expect=self.n)
        # "503" (no responders) before the first leaf is back
        return {answer["node"]: answer for answer in (r.json() for r in replies if "Status" not in r.headers)}

    def wait_healthy(self, what, timeout):
        """Until every daemon answers with its uplink up and nothing pending: the answers."""
        def healthy():
            answers = unless_busy(self.health) or {}
            done = len(answers) == self.n and all(
                a["checks"]["uplink"]["state"] == "up" and a["checks"]["events"]["pending"] == 0
                for a in answers.values())
            return answers if done else None
        return wait_for(what, healthy, timeout, 0.25)

    def leaf_events(self):
        """Events in all the leaves' own streams, asked through the hub in each leaf's domain."""
        with connect(self.hub.port) as client:
            return sum(leaf_stream(client, node)["state"]["messages"] for node in self.nodes)

    def aggregated(self, timeout=5):
        """Events in the hub's stream."""
        with connect(self.hub.port, timeout) as client:
            return api(client, HUB, f"STREAM.INFO.{AGGREGATE}", timeout=timeout)["state"]["messages"]

    def check_exactly_once(self):
        """Each node's events in the hub's stream as many as in its own stream;
        else RuntimeError naming the nodes that differ."""
        with connect(self.hub.port, 10) as client:
            subjects = api(client, HUB, f"STREAM.INFO.{AGGREGATE}",
                           {"subjects_filter": "cim.leaf.*.events.>"}, timeout=10)["state"].get("subjects", {})
            per_node = {}
            for subject, count in subjects.items():
                node = subject.split(".")[2]
                per_node[node] = per_node.get(node, 0) + count
            wrong = []
            for node in self.nodes:
                own = leaf_stream(client, node, {"subjects_filter": "cim.leaf.*.events.>"})
                foreign = [s for s in own["state"].get("subjects", {}) if s.split(".")[2] != node]
                if per_node.get(node, 0) != own["state"]["messages"] or foreign:
                    wrong.append(f"{node} (hub {per_node.get(node, 0)}, leaf {own['state']['messages']}"
                                 f"{', other nodes: ' + ', '.join(foreign[:3]) if foreign else ''})")
        if wrong:
            raise RuntimeError(f"the hub's stream differs from {len(wrong)} leaves: {'; '.join(wrong[:5])}")

    def memory(self):
        """Medians and totals of Rss/Pss (MiB) of the leaf servers, the daemons, and the hub's."""
        def of(pids):
            values = [memory_kib(pid) for pid in pids]
            return {"rss_mib": statistics.median(r for r, _ in values) / 1024,
                    "pss_mib": statistics.median(p for _, p in values) / 1024,
                    "pss_total_mib": sum(p for _, p in values) / 1024}
        hub_rss, hub_pss = memory_kib(self.hub.proc.pid)
        return {"leaf_server": of(server.proc.pid for server, _ in self.leaves),
                "daemon": of(daemon.proc.pid for daemon in self.daemons),
                "hub": {"rss_mib": hub_rss / 1024, "pss_mib": hub_pss / 1024}}

    def descriptors(self):
        """Open files: the hub's, each leaf server's and daemon's (median), and this runner's."""
        return {"hub": open_files(self.hub.proc.pid),
                "leaf_server": statistics.median(open_files(server.proc.pid) for server, _ in self.leaves),
                "daemon": statistics.median(open_files(daemon.proc.pid) for daemon in self.daemons),
                "runner": open_files(os.getpid())}

    def subscriptions(self):
        """The hub's and (median) each leaf server's subscriptions, as their /varz count them:
        a leaf server also holds the interest of every other leaf, propagated by the hub."""
        leaves = [varz(ports["http"])["subscriptions"] for _, ports in self.leaves]
        return {"hub": varz(self.hub_http)["subscriptions"], "leaf_server": statistics.median(leaves)}

    def close(self):
        """SIGTERM to all, then SIGKILL to what is left after 20 s; the daemons first."""
        for group in (self.daemons, [s for s in self.servers() if s.proc]):
            procs = [d.proc for d in group] if group is self.daemons else [s.proc for s in group]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 20
            for proc in procs:
                try:
                    proc.wait(max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for daemon in self.daemons:
            daemon.stop()  # its notify socket and log; the process is gone


def measure_round(fleet, round_):
    """Kill the hub, one reload per daemon while it is away, start it again: the figures."""
    hub, res = fleet.hub, {}
    groups = {"hub": [hub.proc.pid], "servers": [server.proc.pid for server, _ in fleet.leaves],
              "daemons": [daemon.proc.pid for daemon in fleet.daemons]}
    before = {name: sum(map(cpu_ticks, pids)) for name, pids in groups.items()}
    time.sleep(IDLE_S)
    for name, pids in groups.items():
        res[f"{name}_idle_cpu_pct"] = (sum(map(cpu_ticks, pids)) - before[name]) / CLOCK_TICKS / IDLE_S * 100

    stored_before = fleet.aggregated()
    marks = [len(daemon.messages) for daemon in fleet.daemons]
    killed = time.time()
    hub.proc.kill()
    hub.proc.wait()

    def all_down():
        return all(any("uplink to the hub down" in m for m in daemon.messages[mark:])
                   for daemon, mark in zip(fleet.daemons, marks))
    wait_for("every daemon saying the uplink is down", all_down, 30, 0.05)
    res["all_down_s"] = time.time() - killed
    began = time.time()
    for node, daemon in zip(fleet.nodes, fleet.daemons):
        try:
            daemon.reload()
        except RuntimeError as error:
            raise RuntimeError(f"{node}: {error}") from None
    res["outage_reloads_s"] = time.time() - began

    started = time.time()
    hub.spawn(f"hub-r{round_}")
    wait_for("the hub listening", hub.listening, 10, 0.005)
    res["hub_listening_s"] = time.time() - started
    pid = hub.proc.pid

    leafnodes = Poller(lambda: (varz(fleet.hub_http, 1)["leafnodes"], cpu_ticks(pid)), 0.05)
    stream = Poller(lambda: fleet.aggregated(1), 0.1)
    try:
        answers = fleet.wait_healthy("every uplink up again", 120)
        target = fleet.leaf_events()
        wait_for("every leaf's events in the hub's stream",
                 lambda: stream.samples and stream.samples[-1][1] >= target, 180, 0.05)
    finally:
        leafnodes.stop()
        stream.stop()
    all_in = stream.first(lambda count: count >= target)
    res["all_leafnodes_s"] = (leafnodes.first(lambda v: v[0] >= fleet.n) or float("nan")) - started
    res["all_uplinks_up_s"] = max(parse_time(a["checks"]["uplink"]["since"]) for a in answers.values()) - started
    res["all_events_in_s"] = all_in - started
    res["events_backlog"] = target - stored_before
    res["events_total"] = target

    connects = logged(hub.log, b"Leafnode connection created")
    # A leaf gives the hub 2 s to finish a connection's handshake, then drops it and tries again.
    res["stale_handshakes"] = len(logged(hub.log, b"Stale Leaf Node Connection"))
    res["close_reasons"] = close_reasons(hub.log)
    res["leafnode_closes"] = sum(res["close_reasons"].values())
    res["leafnode_connects"] = len(connects)
    res["peak_connects_per_s"] = peak_per_second(connects)
    res["connects_span_ms"] = (max(connects) - min(connects)) * 1000 if connects else float("nan")
    # The hub's CPU from its start until every event is in: ticks at the last sample before.
    ticks = [v[1] for t, v in leafnodes.samples if t <= all_in]
    cpu_s = (ticks[-1] if ticks else 0) / CLOCK_TICKS
    res["hub_recovery_cpu_s"] = cpu_s
    res["hub_recovery_cpu_pct"] = cpu_s / res["all_events_in_s"] * 100
    slices = [(t1 - t0, v1[1] - v0[1]) for (t0, v0), (t1, v1) in zip(leafnodes.samples[::10], leafnodes.samples[10::10])]
    res["hub_peak_cpu_pct"] = max((ticks / CLOCK_TICKS / dt * 100 for dt, ticks in slices), default=float("nan"))
    res["hub_peak_rss_mib"] = peak_rss_mib(pid)

    time.sleep(1)  # a duplicate would come in after the count was reached
    if (count := fleet.aggregated()) != target:
        raise RuntimeError(f"round {round_}: the hub's stream holds {count} events, the leaves {target}")
    fleet.check_exactly_once()
    return res


def raise_fd_limit():
    """Each daemon costs this runner 2 descriptors (notify socket, log), and the
    hub one per leaf: the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(args, tmp):
    """The fleet simulation: {setup figures, rounds: [figures of each round]}."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)  # through every finally: the fleet is closed
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    nofile = raise_fd_limit()
    available = mem_available_mib()
    fleet = Fleet(args, tmp)
    print(f"fleet: {args.leaves} leaves (a nats-server and a daemon each) behind one hub, in {tmp}; "
          f"{args.rounds} rounds of hub killed, one reload per daemon, hub started; uplink.interval "
          f"{args.uplink_interval}; open files up to {nofile}; load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        began = time.monotonic()
        fleet.start()
        result = {"leaves": args.leaves, "start_s": time.monotonic() - began, "rounds": []}
        time.sleep(5)  # past the start's bursts
        result["memory"] = fleet.memory()
        result["subscriptions"] = fleet.subscriptions()
        result["descriptors"] = fleet.descriptors()
        result["mem_used_mib"] = available - mem_available_mib()
        result["load_average"] = os.getloadavg()[0]
        for round_ in range(args.rounds):
            result["rounds"].append(measure_round(fleet, round_))
            figures = result["rounds"][-1]
            print(f"  round {round_ + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if k != "close_reasons")
                  + f"; leaf node connections the hub closed, by reason: {figures['close_reasons'] or 'none'}",
                  flush=True)
    finally:
        fleet.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


# (key, label, format)
ROWS = [
    ("hub_listening_s", "hub started to listening (s)", "{:.2f}"),
    ("all_leafnodes_s", "hub started to all N leaf nodes connected (s)", "{:.2f}"),
    ("leafnode_connects", "leaf node connections made", "{:.0f}"),
    ("leafnode_closes", "  closed again (reasons in the round's line)", "{:.0f}"),
    ("stale_handshakes", "  of them, handshake not done in 2 s", "{:.0f}"),
    ("peak_connects_per_s", "peak leaf node connects in one second", "{:.0f}"),
    ("connects_span_ms", "first to last leaf node connect (ms)", "{:.0f}"),
    ("all_uplinks_up_s", "hub started to every daemon's uplink up (s)", "{:.2f}"),
    ("all_events_in_s", "hub started to every event in its stream (s)", "{:.2f}"),
    ("hub_recovery_cpu_s", "hub CPU until then (s)", "{:.2f}"),
    ("hub_recovery_cpu_pct", "  of one core (%)", "{:.0f}"),
    ("hub_peak_cpu_pct", "  at most, in 0.5 s (%)", "{:.0f}"),
    ("hub_peak_rss_mib", "hub's peak resident memory since its start (MiB)", "{:.0f}"),
    ("hub_idle_cpu_pct", "idle, before the kill: the hub's CPU (% of a core)", "{:.1f}"),
    ("servers_idle_cpu_pct", "  all N leaf servers' (% of a core)", "{:.1f}"),
    ("daemons_idle_cpu_pct", "  all N daemons' (% of a core)", "{:.1f}"),
    ("all_down_s", "hub killed to every daemon's uplink down (s)", "{:.2f}"),
    ("outage_reloads_s", "N reloads during the outage (s)", "{:.2f}"),
    ("events_backlog", "events made during the outage, all leaves", "{:.0f}"),
    ("events_total", "events in the hub's stream, all rounds", "{:.0f}"),
]


def table(result):
    rounds = result["rounds"]
    lines = [("per round", "median", "min-max")]
    for key, label, fmt in ROWS:
        median, low, high = spread([r[key] for r in rounds])
        lines.append((label, fmt.format(median), f"{fmt.format(low)}-{fmt.format(high)}"))
    print_table(lines)
    memory = result["memory"]
    print(f"started in {result['start_s']:.0f} s; memory (median Rss / Pss, MiB): leaf nats-server "
          f"{memory['leaf_server']['rss_mib']:.1f} / {memory['leaf_server']['pss_mib']:.1f}, daemon "
          f"{memory['daemon']['rss_mib']:.1f} / {memory['daemon']['pss_mib']:.1f}, hub "
          f"{memory['hub']['rss_mib']:.1f} / {memory['hub']['pss_mib']:.1f}; all Pss "
          f"{memory['leaf_server']['pss_total_mib'] + memory['daemon']['pss_total_mib'] + memory['hub']['pss_mib']:.0f}"
          f" MiB, MemAvailable down by {result['mem_used_mib']:.0f} MiB; subscriptions: hub "
          f"{result['subscriptions']['hub']}, leaf nats-server {result['subscriptions']['leaf_server']:.0f} (median); "
          f"load average {result['load_average']:.1f}")
    fds = result["descriptors"]
    print(f"open files: hub {fds['hub']}, leaf nats-server {fds['leaf_server']:.0f} (median), daemon "
          f"{fds['daemon']:.0f} (median), this runner {fds['runner']}")

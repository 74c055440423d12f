"""The daemon's health answers against bare nats.c responders
(bare_responder, answering with a copy of one of the daemon's own health
replies, so both send as many bytes), all on one nats-server, in rounds
that measure both, the order swapped every round. Run by measure.py; the
tables show medians of the paired ratios (daemon / bare within a round)
with their min-max. Goals are printed, never asserted.

health: one daemon and one bare responder, both running the whole time.
Each round measures, each metric for both before the next: closed-loop
throughput and latency with -k in flight and p99 with --k-high in flight;
the responder's CPU per request (all its threads, before and after) at one
request every --cpu-interval-us, its idle timers' share of those seconds
included (about 0.2 us a request); and start to READY=1 of a fresh process
of each (the daemon's state directory kept from the start before, as in a
restart). Once, both in one window since both run anyway: idle CPU and
voluntary context switches (what the timers cost), then Rss and Pss. At the
end the server is killed and started again and both are probed from that
moment: one sample each, decided mostly by the reconnect wait's 100 ms of
jitter, so no ratio.

fanout: N daemons (bench-0..bench-(N-1)) and N bare responders on one
nats-server; a request to cim.leaf.health, which every daemon answers, and
one to bench.bare.health, which every bare one answers: the time from its
publish to the N-th reply, --fanout-repeats times a round. The processes
are added from one N of --fanout-leaves to the next; with each N, the mean
Pss of a daemon and of a bare responder (the libraries shared by all).

Both also run bare-loop beside them, measured in the same rounds: the bare
responder built with -DSOCKET_LOOP, which reads its socket through nats.c's
event loop (one thread reads and answers) where bare and the daemon use
nats.c's own threads. The goals are against bare; the rows against
bare-loop tell what that model would be worth.
"""
import json
import os
import subprocess
import time

from common import (NatsServer, Notified, conditions, executable, free_port, memory_kib, paired, print_conditions,
                    print_table, spread, stop_all, threads_sample)
from fleet import BATCH, ORPHAN_GUARD, raise_fd_limit
from nats_client import Client  # on sys.path through events, which fleet imports

VARIANTS = ("bare", "daemon", "bare-loop")
BARES = ("bare", "bare-loop")
SUBJECTS = {"bare": "bench.bare.health", "daemon": "cim.leaf.bench.health", "bare-loop": "bench.bare-loop.health"}
FANOUT_SUBJECTS = {**SUBJECTS, "daemon": "cim.leaf.health"}
PROGRAMS = {"bare": "bare_responder", "bare-libs": "bare_responder_libs", "bare-loop": "bare_responder_loop"}
READY_S = 30  # for each batch of processes started together

DAEMON_CONFIG = """\
node: {{id: {node}}}
nats:
  servers: [{url}]
  reconnect: {{wait: 250ms, jitter: 100ms}}  # bare_responder's
dbus: {{bus: none}}
heartbeat: {{interval: {heartbeat}}}
log: {{level: warn}}
"""


def bin_path(args, prog):
    return os.path.join(args.bin_dir, prog)


def run_json(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return json.loads(r.stdout)


def start_daemon(args, tmp, node, url, heartbeat="5s", ready_timeout=10, guard=()):
    """A daemon with its own config, log and state directory (its spool) in tmp."""
    config = os.path.join(tmp, f"{node}.yaml")
    with open(config, "w") as f:
        f.write(DAEMON_CONFIG.format(node=node, url=url, heartbeat=heartbeat))
    state = os.path.join(tmp, f"state-{node}")
    os.makedirs(state, exist_ok=True)
    return Notified([*guard, args.daemon, "--config", config], tmp, os.path.join(tmp, f"{node}.log"),
                    env={"STATE_DIRECTORY": state}, ready_timeout=ready_timeout)


def start_bare(args, tmp, name, url, subject, reply, ready_timeout=10, guard=(), prog="bare_responder"):
    """A bare responder; reply: the file whose bytes it answers with, or None for its built-in one."""
    return Notified([*guard, bin_path(args, prog), url, subject, *([reply] if reply else [])], tmp,
                    os.path.join(tmp, f"{name}.log"), ready_timeout=ready_timeout)


def ready_ms(p):
    """p's start to READY=1 (ms); RuntimeError with its log's tail if none came."""
    if p.ready_ms is None:
        state = f"exited with {p.proc.returncode}" if p.proc.poll() is not None else "no READY=1 in time"
        with open(p.logf.name) as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"{' '.join(p.proc.args)}: {state}; notify: {p.messages[-5:]}; log tail:\n{tail}")
    return p.ready_ms


def grow(procs, n, start):
    """start(i) for i from len(procs) up to n, BATCH at a time, each batch's READY=1 waited for."""
    for first in range(len(procs), n, BATCH):
        for i in range(first, min(first + BATCH, n)):
            procs.append(start(i))  # at once, so that the caller stops it whatever comes next
        batch = procs[first:]
        deadline = time.monotonic() + READY_S
        for p in batch:
            while not p.ready.wait(0.01):
                if p.proc.poll() is not None or time.monotonic() > deadline:
                    ready_ms(p)  # raises, with the log's tail


def save_reply(port, subject, path):
    """One of the daemon's answers on subject, saved for bare_responder; its size."""
    with Client(port, timeout=2) as client:
        data = client.request(subject, timeout=2).data
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def idle_and_memory(args, running):
    """{variant: figures} of all running responders over one idle window, then their memory."""
    before = {v: threads_sample(p.proc.pid) for v, p in running.items()}
    time.sleep(args.idle)
    res = {}
    for v, p in running.items():
        cpu, voluntary, _ = threads_sample(p.proc.pid)
        rss, pss = memory_kib(p.proc.pid)
        res[v] = {"idle_cpu_ms_per_s": (cpu - before[v][0]) / 1e6 / args.idle,
                  "wakeups_per_s": (voluntary - before[v][1]) / args.idle,
                  "rss_mib": rss / 1024, "pss_mib": pss / 1024}
    return res


def measure_round(args, tmp, server, running, order, reply, round_):
    """{variant: figures} of one round: each metric for both, in `order`, before the next."""
    bench, res = bin_path(args, "health_bench"), {v: {} for v in order}
    for v in order:
        r = run_json([bench, "-n", str(args.n), "-k", str(args.k), "-t", "60", server.url, SUBJECTS[v]], 70)
        res[v].update(throughput=r["throughput"], p50_us=r["p50_us"], p99_us=r["p99_us"])
    for v in order:
        r = run_json([bench, "-n", str(args.n), "-k", str(args.k_high), "-t", "60", server.url, SUBJECTS[v]], 70)
        res[v].update(throughput_high=r["throughput"], p99_us_high=r["p99_us"])
    for v in order:
        pid = running[v].proc.pid
        before = threads_sample(pid)[0]
        budget = min(600, 10 + 2 * args.cpu_requests * args.cpu_interval_us // 10**6)  # twice the schedule
        r = run_json([bench, "-i", str(args.cpu_interval_us), "-n", str(args.cpu_requests), "-t", str(budget),
                      server.url, SUBJECTS[v]], budget + 10)
        res[v]["cpu_us_per_request"] = (threads_sample(pid)[0] - before) / 1e3 / args.cpu_requests
        res[v]["paced_p50_us"] = r["p50_us"]
    # Fresh processes on subjects of their own, without ORPHAN_GUARD: setpriv's exec would be in the time. The
    # daemon finds its spool from the last round, as a restart does (run() lets the first one make it).
    # bare-libs is bare loading every library the daemon loads: the rest of the daemon's start is its own.
    for v in (*order, "bare-libs") if round_ % 2 == 0 else ("bare-libs", *order):
        if v == "daemon":
            p = start_daemon(args, tmp, "bench-start", server.url)
        else:
            p = start_bare(args, tmp, f"{v}-start-r{round_}", server.url, f"bench.{v}-start.health", reply,
                           prog=PROGRAMS[v])
        try:
            ready = ready_ms(p)
        finally:
            p.stop()
        res.setdefault(v, {})["ready_ms"] = ready
    return res


def probe_together(args, url, subjects, since):
    """{variant: answered_ms} of health_bench -p on each subject, all running at once, all from `since`."""
    probes = {v: subprocess.Popen([bin_path(args, "health_bench"), "-p", "-s", str(since), "-t", "20", url, subject],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for v, subject in subjects.items()}
    try:
        res = {}
        for v, p in probes.items():
            out, err = p.communicate(timeout=30)
            if p.returncode != 0:
                raise RuntimeError(f"{v}: {err.strip() or p.returncode}")
            res[v] = json.loads(out)["answered_ms"]
        return res
    finally:
        for p in probes.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def run(args, tmp):
    """The health benchmark: (results, why the daemon's half is missing or None)."""
    start = conditions()
    have_daemon = executable(args.daemon)
    variants = VARIANTS if have_daemon else BARES
    print(f"health: {args.rounds} rounds of {args.n} requests with {args.k} and with {args.k_high} in flight, "
          f"{args.cpu_requests} one every {args.cpu_interval_us} us, a fresh start; idle: {args.settle:g} s settle "
          f"+ {args.idle:g} s sample", flush=True)
    server = NatsServer(free_port(), os.path.join(tmp, "nats-health.log"))
    server.start()
    running, reply = {}, None
    result = {"start": start, "k": args.k, "k_high": args.k_high, "cpu_interval_us": args.cpu_interval_us,
              "idle_s": args.idle, "rounds": []}
    try:
        if have_daemon:
            running["daemon"] = start_daemon(args, tmp, "bench", server.url, guard=ORPHAN_GUARD)
            ready_ms(running["daemon"])
            reply = os.path.join(tmp, "health-reply.json")
            result["reply_bytes"] = save_reply(server.port, SUBJECTS["daemon"], reply)
            first = start_daemon(args, tmp, "bench-start", server.url)  # makes the spool the measured starts find
            stop_all([first])
            ready_ms(first)
        for v in BARES:
            running[v] = start_bare(args, tmp, v, server.url, SUBJECTS[v], reply, guard=ORPHAN_GUARD, prog=PROGRAMS[v])
            ready_ms(running[v])
        time.sleep(args.settle)
        result["once"] = idle_and_memory(args, running)
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            result["rounds"].append(measure_round(args, tmp, server, running, order, reply, round_))
        server.kill()
        since = time.time_ns()
        server.start()
        for v, ms in probe_together(args, server.url, {v: SUBJECTS[v] for v in variants}, since).items():
            result["once"][v]["reconnect_ms"] = ms
        for v, p in running.items():
            if p.proc.poll() is not None:
                raise RuntimeError(f"{v} exited during the run, see {p.logf.name}")
    finally:
        stop_all(running.values())
        server.kill()
    result["end"] = conditions()
    return result, None if have_daemon else \
        f"health: daemon binary not found at {args.daemon} (build it, or set CIM_LEAF_BIN): only bare is measured"


def row(label, fmt, bare, daemon, goal="", met=None):
    """A table line from per-round values; met(ratio median, daemon median) says whether the goal is.
    `bare` is the baseline's, bare or bare-loop."""
    if not daemon:
        return (label, fmt.format(spread(bare)[0]), "-", "-", goal, "")
    ratio, low, high = paired(daemon, bare)
    verdict = ("met" if met(ratio, spread(daemon)[0]) else "MISSED") if met else ""
    return (label, fmt.format(spread(bare)[0]), fmt.format(spread(daemon)[0]), f"{ratio:.2f} ({low:.2f}-{high:.2f})",
            goal, verdict)


HEAD = ("metric", "bare", "daemon", "ratio (min-max)", "goal", "verdict")

# (key, label, format, goal, met(ratio, daemon)); labels are formatted with the run's figures.
ROUND_ROWS = [
    ("throughput", "throughput, {k} in flight (req/s)", "{:.0f}", ">= 0.97x bare", lambda ratio, _: ratio >= 0.97),
    ("p50_us", "latency p50, {k} in flight (us)", "{:.0f}", "", None),
    ("p99_us", "latency p99, {k} in flight (us)", "{:.0f}", "", None),
    ("p99_us_high", "latency p99, {k_high} in flight (us)", "{:.0f}", "<= 1.05x bare", lambda ratio, _: ratio <= 1.05),
    ("cpu_us_per_request", "CPU per request, one every {cpu_interval_us} us (us)", "{:.1f}", "<= 1.1x bare",
     lambda ratio, _: ratio <= 1.1),
    ("ready_ms", "start to READY=1 (ms)", "{:.1f}", "< 8 ms", lambda _, daemon: daemon < 8),
]
# Measured once: absolute values, no ratio.
ONCE_ROWS = [
    ("idle_cpu_ms_per_s", "idle CPU, one {idle_s:g} s window for both (ms/s)", "{:.3f}"),
    ("wakeups_per_s", "idle wakeups (voluntary ctx switches/s)", "{:.2f}"),
    ("rss_mib", "Rss after idle (MiB)", "{:.1f}"),
    ("pss_mib", "Pss after idle (MiB)", "{:.1f}"),
    ("reconnect_ms", "server restart to answering, once (ms)", "{:.0f}"),
]


def table(result):
    rounds = result["rounds"]
    print_conditions(result["start"], result["end"], len(rounds))
    if "reply_bytes" in result:
        print(f"both reply with the daemon's {result['reply_bytes']}-byte health answer")
    lines = [HEAD]
    for key, label, fmt, goal, met in ROUND_ROWS:
        lines.append(row(label.format(**result), fmt, [r["bare"][key] for r in rounds],
                         [r["daemon"][key] for r in rounds if "daemon" in r], goal, met))
    lines.append(row("start to READY=1 against bare-libs (ms)", "{:.1f}", [r["bare-libs"]["ready_ms"] for r in rounds],
                     [r["daemon"]["ready_ms"] for r in rounds if "daemon" in r]))
    for key, label, fmt, _, _ in ROUND_ROWS:
        if key in ("throughput", "p99_us_high", "cpu_us_per_request"):
            lines.append(row(label.format(**result) + " against bare-loop", fmt, [r["bare-loop"][key] for r in rounds],
                             [r["daemon"][key] for r in rounds if "daemon" in r]))
    once = result["once"]
    for key, label, fmt in ONCE_ROWS:
        lines.append((label.format(**result), fmt.format(once["bare"][key]),
                      fmt.format(once["daemon"][key]) if "daemon" in once else "-", "-", "", ""))
    print_table(lines)


def run_fanout(args, tmp):
    """The fan-out benchmark: (results, which fan-outs fell short, or None)."""
    start = conditions()
    leaves = sorted({int(n) for n in args.fanout_leaves.split(",")})
    print(f"fanout: {','.join(map(str, leaves))} daemons and as many bare and bare-loop responders on one nats-server, "
          f"{args.rounds} rounds of {args.fanout_repeats} fan-outs each", flush=True)
    raise_fd_limit()  # 2 descriptors a process: its notify socket, its log
    bench = bin_path(args, "health_bench")
    server = NatsServer(free_port(), os.path.join(tmp, "nats-fanout.log"))
    server.start()
    procs, reply = {v: [] for v in VARIANTS}, os.path.join(tmp, "fanout-reply.json")
    result = {"start": start, "rounds": args.rounds, "repeats": args.fanout_repeats, "leaves": {}}
    try:
        for n in leaves:
            began = time.monotonic()
            grow(procs["daemon"], n, lambda i: start_daemon(args, tmp, f"bench-{i}", server.url, heartbeat="30s",
                                                             ready_timeout=0, guard=ORPHAN_GUARD))
            if "reply_bytes" not in result:
                result["reply_bytes"] = save_reply(server.port, "cim.leaf.bench-0.health", reply)
            for v in BARES:
                grow(procs[v], n, lambda i, v=v: start_bare(args, tmp, f"{v}-{i}", server.url, FANOUT_SUBJECTS[v],
                                                            reply, ready_timeout=0, guard=ORPHAN_GUARD,
                                                            prog=PROGRAMS[v]))
            started = time.monotonic() - began
            rounds, budget = [], min(600, 30 + args.fanout_repeats // 2)  # half a second a fan-out
            for round_ in range(args.rounds):
                order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
                rounds.append({v: run_json([bench, "-f", str(n), "-r", str(args.fanout_repeats), "-t", str(budget),
                                            server.url, FANOUT_SUBJECTS[v]], budget + 10) for v in order})
            pss = {v: sum(memory_kib(p.proc.pid)[1] for p in ps) / len(ps) / 1024 for v, ps in procs.items()}
            result["leaves"][str(n)] = {"start_s": started, "rounds": rounds, "pss_mib": pss}
            print(f"  {n} leaves: {sum(map(len, procs.values()))} processes, the new ones ready in {started:.1f} s",
                  flush=True)
    finally:
        stop_all([p for ps in procs.values() for p in ps])
        server.kill()
    result["end"] = conditions()
    short = [f"{n} leaves: {v} {sum(r[v]['short'] for r in figures['rounds'])} fan-outs"
             for n, figures in result["leaves"].items() for v in VARIANTS
             if any(r[v]["short"] for r in figures["rounds"])]
    return result, f"fanout: short of replies within 2 s: {'; '.join(short)}" if short else None


def fanout_table(result):
    print_conditions(result["start"], result["end"], result["rounds"])
    print(f"{result['repeats']} fan-outs a round, each answered with {result['reply_bytes']} bytes by every "
          "responder; time from the publish to the last reply")
    lines = [HEAD]
    for n, figures in result["leaves"].items():
        rounds = figures["rounds"]
        for key, label, goal, met in (("median_us", "median", "<= 1.05x bare", lambda ratio, _: ratio <= 1.05),
                                      ("p90_us", "p90", "", None)):
            lines.append(row(f"{n} leaves: all answered, {label} (us)", "{:.0f}", [r["bare"][key] for r in rounds],
                             [r["daemon"][key] for r in rounds], goal, met))
        lines.append(row(f"{n} leaves: all answered, median (us) against bare-loop", "{:.0f}",
                         [r["bare-loop"]["median_us"] for r in rounds], [r["daemon"]["median_us"] for r in rounds]))
        pss = figures["pss_mib"]
        lines.append((f"{n} leaves: Pss per process (MiB)", f"{pss['bare']:.2f}", f"{pss['daemon']:.2f}", "-", "", ""))
    print_table(lines)

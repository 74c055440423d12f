#!/usr/bin/env python3
"""The benchmarks, run by bench/run.sh (which builds the C programs):
health measures bare_responder and the cim-leaf daemon the same way and
prints a table of ratios; events and spool are in events.py, the fleet
simulation in fleet.py, the idle cost of watching systemd units (in a
container, as root) in units_idle.py.

Everything but units runs on 127.0.0.1 against nats-servers started here; every loop
is bounded in count and time. Targets are printed, never asserted: timings
on a shared 2-core machine are too noisy to fail a build on.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import events
import fleet
import units_idle
from common import NatsServer, Notified, free_port, print_table, threads_sample


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_json(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return json.loads(r.stdout)


def measure(name, cmd, subject, server, args, tmp):
    """All metrics for one responder (started by cmd) answering subject."""
    log = os.path.join(tmp, f"{name}.log")
    res = {}
    p = Notified(cmd, tmp, log)
    try:
        if p.ready_ms is None:
            tail = open(log).read()[-2000:]
            state = f"exited with {p.proc.returncode}" if p.proc.poll() is not None else "no READY=1 in 10 s"
            raise RuntimeError(f"{name}: {state}; notify: {p.messages[-5:]}; log tail:\n{tail}")
        res["ready_ms"] = p.ready_ms
        pid = p.proc.pid

        time.sleep(args.settle)
        res["rss_mib"] = rss_mib(pid)
        cpu0, vcs0, _ = threads_sample(pid)
        time.sleep(args.idle)
        cpu1, vcs1, _ = threads_sample(pid)
        res["idle_cpu_ms_per_s"] = (cpu1 - cpu0) / 1e6 / args.idle
        res["wakeups_per_s"] = (vcs1 - vcs0) / args.idle

        bench = [bin_path(args, "health_bench"), "-n", str(args.n), "-k", str(args.k), "-t", "60",
                 server.url, subject]
        runs = [run_json(bench, 70) for _ in range(args.repeat)]
        best = sorted(runs, key=lambda r: r["throughput"])[len(runs) // 2]  # the median run
        res.update(throughput=best["throughput"], p50_us=best["p50_us"], p99_us=best["p99_us"])

        server.kill()
        t0 = time.time_ns()
        server.start()
        probe = [bin_path(args, "health_bench"), "-p", "-s", str(t0), "-t", "20", server.url, subject]
        res["reconnect_ms"] = run_json(probe, 30)["answered_ms"]
        if p.proc.poll() is not None:
            raise RuntimeError(f"{name} exited during the run, see {log}")
    finally:
        p.stop()
    return res


def bin_path(args, prog):
    return os.path.join(args.bin_dir, prog)


DAEMON_CONFIG = """\
node: {{id: bench}}
nats:
  servers: [{url}]
  reconnect: {{wait: 250ms, jitter: 100ms}}
dbus: {{bus: none}}
heartbeat: {{interval: 5s}}
log: {{level: warn}}
"""

# (key, label, format, target description, check of ratio or daemon value)
ROWS = [
    ("throughput", "health throughput (req/s)", "{:.0f}", ">= 0.9x bare", lambda b, d: d >= 0.9 * b),
    ("p50_us", "health latency p50 (us)", "{:.0f}", "", None),
    ("p99_us", "health latency p99 (us)", "{:.0f}", "<= 1.2x bare", lambda b, d: d <= 1.2 * b),
    ("ready_ms", "start to READY=1 (ms)", "{:.1f}", "< 50 ms", lambda b, d: d < 50),
    ("rss_mib", "VmRSS after idle (MiB)", "{:.1f}", "< 12 MiB", lambda b, d: d < 12),
    ("idle_cpu_ms_per_s", "idle CPU (ms/s)", "{:.3f}", "", None),
    ("wakeups_per_s", "idle wakeups (vol. ctx sw/s)", "{:.1f}", "", None),
    ("reconnect_ms", "server restart to answer (ms)", "{:.0f}", "", None),
]


def table(bare, daemon):
    lines = [("metric", "bare", "daemon", "ratio", "target", "verdict")]
    for key, label, fmt, target, ok in ROWS:
        b, d = bare.get(key), (daemon or {}).get(key)
        ratio = f"{d / b:.2f}" if b and d is not None else "-"
        verdict = ("met" if ok(b, d) else "MISSED") if ok and d is not None else ""
        lines.append((label, fmt.format(b) if b is not None else "-",
                      fmt.format(d) if d is not None else "-", ratio, target, verdict))
    print_table(lines)


def run_health(args, tmp):
    """(results, and why the daemon's half is missing or None)."""
    results = {}
    print(f"health: {args.repeat} x {args.n} requests, {args.k} in flight; "
          f"idle: {args.settle:g} s settle + {args.idle:g} s sample", flush=True)

    server = NatsServer(free_port(), os.path.join(tmp, "nats-bare.log"))
    server.start()
    try:
        results["bare"] = measure("bare", [bin_path(args, "bare_responder"), server.url, "bench.bare.health"],
                                  "bench.bare.health", server, args, tmp)
    finally:
        server.kill()

    if not executable(args.daemon):
        return results, f"daemon binary not found at {args.daemon} (build it, or set CIM_LEAF_BIN): " \
            "only the bare column is measured"
    server = NatsServer(free_port(), os.path.join(tmp, "nats-daemon.log"))
    server.start()
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(DAEMON_CONFIG.format(url=server.url))
    try:
        results["daemon"] = measure("daemon", [args.daemon, "--config", cfg],
                                    "cim.leaf.bench.health", server, args, tmp)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return results, f"daemon half failed: {e}"
    finally:
        server.kill()
    return results, None


def executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


BENCHMARKS = ("health", "events", "spool", "fleet", "units")
# Only when named: the fleet, hundreds of processes for minutes; units, a container booted as root.
DEFAULT = ("health", "events", "spool")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default=",".join(DEFAULT),
                    help=f"comma-separated benchmarks to run, of {','.join(BENCHMARKS)} (default {','.join(DEFAULT)})")
    ap.add_argument("--bin-dir", required=True, help="where health_bench and bare_responder are")
    ap.add_argument("--daemon", required=True, help="cim-leaf binary")
    ap.add_argument("--spool-bench", required=True, help="spool-bench binary")
    health = ap.add_argument_group("health")
    health.add_argument("-n", type=int, default=20000, help="measured requests per run")
    health.add_argument("-k", type=int, default=8, help="requests in flight")
    health.add_argument("--repeat", type=int, default=3, help="runs per responder; the median is shown")
    health.add_argument("--settle", type=float, default=5, help="idle seconds before reading VmRSS")
    health.add_argument("--idle", type=float, default=10, help="idle seconds for CPU and wakeups")
    both = ap.add_argument_group("events, spool, fleet and units")
    both.add_argument("--rounds", type=int, default=4,
                      help="rounds, each measuring both variants, the order swapped every round "
                      "(fleet: each a hub outage)")
    both.add_argument("--backlog", type=int, default=10000, help="events spooled while the server is down")
    both.add_argument("--live", type=int, default=250, help="reloads (2 events each) with the server up")
    both.add_argument("--spool-events", type=int, default=500, help="events per spool-bench run")
    simulation = ap.add_argument_group("fleet")
    simulation.add_argument("--leaves", type=int, default=100, help="leaves: a nats-server and a daemon each")
    simulation.add_argument("--uplink-interval", default="1s", help="the daemons' uplink.interval")
    watching = ap.add_argument_group("units")
    watching.add_argument("--units", type=int, default=20, help="services started and watched (half by a glob)")
    watching.add_argument("--units-settle", type=float, default=5, help="seconds after the health check")
    watching.add_argument("--units-idle", type=float, default=20, help="seconds of the idle window")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    chosen = args.only.split(",")
    if unknown := set(chosen) - set(BENCHMARKS):
        ap.error(f"--only: unknown {','.join(sorted(unknown))}; choose of {','.join(BENCHMARKS)}")

    errors = []
    for needs_daemon in ("events", "fleet"):
        if not executable(args.daemon) and needs_daemon in chosen:
            errors.append(f"{needs_daemon}: daemon binary not found at {args.daemon} (build it, or set CIM_LEAF_BIN)")
            chosen.remove(needs_daemon)
    if not executable(args.spool_bench) and "spool" in chosen:
        errors.append(f"spool: spool-bench not found at {args.spool_bench} (meson compile -C build)")
        chosen.remove("spool")

    results = {}
    with tempfile.TemporaryDirectory(prefix="cim-leaf-bench-") as tmp:
        if "health" in chosen:
            results["health"], error = run_health(args, tmp)
            table(results["health"]["bare"], results["health"].get("daemon"))
            errors += [error] if error else []
        if "events" in chosen:
            print()
            try:
                results["events"] = events.run(args, tmp)
                events.table(results["events"])
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(f"events: {e}")
        if "spool" in chosen:
            print()
            try:
                results["spool"] = events.run_spool(args, tmp)
                events.spool_table(results["spool"])
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(f"spool: {e}")
        if "fleet" in chosen:
            print()
            try:
                results["fleet"] = fleet.run(args, tmp)
                fleet.table(results["fleet"])
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(f"fleet: {e}")
        if "units" in chosen:
            print()
            try:
                results["units"] = units_idle.run(args)
                units_idle.table(results["units"])
            except Exception as e:  # also the Machine API's plain Exception and the scenario's AssertionError
                errors.append(f"units: {e}")
    if errors:
        sys.stdout.flush()
        print("\n" + "\n".join(errors), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results, errors=errors), f, indent=2)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()

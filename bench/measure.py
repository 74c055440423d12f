#!/usr/bin/env python3
"""The benchmarks, run by bench/run.sh (which builds the C programs):
health and fanout (in health.py) measure the cim-leaf daemon against bare
nats.c responders answering with the same bytes (bare, and bare-loop,
which reads its socket on one thread through nats.c's event loop), on one
nats-server, in rounds
that alternate them: health one of each (throughput and latency
with -k and --k-high in flight, CPU per request at one request every
--cpu-interval-us, start to READY=1; once: idle CPU and wakeups, Rss and
Pss, server restart to answering), fanout N of each (--fanout-leaves) and
the time until all N answered one request; events and spool are in
events.py, the fleet simulation in fleet.py, the idle cost of watching
systemd units (in a container, as root) in units_idle.py.

Everything but units runs on 127.0.0.1 against nats-servers started here; every loop
is bounded in count and time. Goals and targets are printed, never asserted: timings
on a shared 2-core machine are too noisy to fail a build on.
"""
import argparse
import json
import signal
import subprocess
import sys
import tempfile

import events
import fleet
import health
import units_idle
from common import executable

BENCHMARKS = ("health", "fanout", "events", "spool", "fleet", "units")
# Only when named: the fleet, hundreds of processes for minutes; units, a container booted as root.
DEFAULT = ("health", "fanout", "events", "spool")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default=",".join(DEFAULT),
                    help=f"comma-separated benchmarks to run, of {','.join(BENCHMARKS)} (default {','.join(DEFAULT)})")
    ap.add_argument("--bin-dir", required=True, help="where health_bench and bare_responder are")
    ap.add_argument("--daemon", required=True, help="cim-leaf binary")
    ap.add_argument("--spool-bench", required=True, help="spool-bench binary")
    responders = ap.add_argument_group("health")
    responders.add_argument("-n", type=int, default=20000, help="measured requests per closed-loop run")
    responders.add_argument("-k", type=int, default=8, help="requests in flight")
    responders.add_argument("--k-high", type=int, default=64, help="requests in flight of the second run (its p99)")
    responders.add_argument("--cpu-requests", type=int, default=1000,
                            help="paced requests whose responder CPU is measured")
    responders.add_argument("--cpu-interval-us", type=int, default=3000, help="one paced request every this many us")
    responders.add_argument("--settle", type=float, default=5,
                            help="idle seconds after the start, before the idle window")
    responders.add_argument("--idle", type=float, default=10, help="idle seconds for CPU and wakeups")
    fanout = ap.add_argument_group("fanout")
    fanout.add_argument("--fanout-leaves", default="50,100",
                        help="comma-separated N: daemons and as many bare and bare-loop responders "
                             "(up to the largest N, 3 per N)")
    fanout.add_argument("--fanout-repeats", type=int, default=50, help="fan-outs per responder and round")
    both = ap.add_argument_group("health, fanout, events, spool, fleet and units")
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
    if not all(n.isdigit() and int(n) > 0 for n in args.fanout_leaves.split(",")):
        ap.error(f"--fanout-leaves: positive numbers separated by commas, not {args.fanout_leaves}")

    errors = []
    for needs_daemon in ("fanout", "events", "fleet"):
        if not executable(args.daemon) and needs_daemon in chosen:
            errors.append(f"{needs_daemon}: daemon binary not found at {args.daemon} (build it, or set CIM_LEAF_BIN)")
            chosen.remove(needs_daemon)
    if not executable(args.spool_bench) and "spool" in chosen:
        errors.append(f"spool: spool-bench not found at {args.spool_bench} (meson compile -C build)")
        chosen.remove("spool")

    def stop(signum, _frame):
        raise SystemExit(128 + signum)  # through every finally: no process of the run is left behind
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    results = {}
    with tempfile.TemporaryDirectory(prefix="cim-leaf-bench-") as tmp:
        if "health" in chosen:
            try:
                results["health"], error = health.run(args, tmp)
                health.table(results["health"])
                errors += [error] if error else []
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(f"health: {e}")
        if "fanout" in chosen:
            print()
            try:
                results["fanout"], error = health.run_fanout(args, tmp)
                health.fanout_table(results["fanout"])
                errors += [error] if error else []
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(f"fanout: {e}")
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

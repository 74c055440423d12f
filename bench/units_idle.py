"""Watching systemd units costs no idle wake-ups (bench/run.sh --only units,
as root): one Debian container booted by tests/system/machines.py (the
system tests' machinery: systemd-nspawn, the daemon from `meson install` of
$CIM_LEAF_BUILDDIR, default build/) with its local nats-server and N simple
services (ExecStart=/bin/sleep infinity), all started.

In each round cim-leaf.service runs twice, the order swapped every round:
with watch.units listing the N units (half by name, half through one glob)
and without watch.units, the same heartbeat.interval for both. Each time the
daemon is restarted with its config, asked for health on NATS (the round
fails unless the watching daemon says checks.units.watching and lists every
unit active, and the other has no checks.units), left alone for the settle
time, then sampled over the idle window from the host, through the
container's procfs (nothing runs in the container meanwhile): the daemon's
context switches and CPU summed over its threads, and those of systemd
(the container's PID 1) and of dbus-daemon, where a cost moved out of the
daemon would show.

A figure generator: nothing about the figures is asserted. The container is
powered off and removed when the run ends, by an error, Ctrl-C or SIGTERM
too.
"""
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from common import paired, print_table, spread, threads_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/system"))
import machines  # noqa: E402  (the system tests' booting)

NODE = "bench"
LEAF = "cim-leaf.service"
SLEEPER = "[Service]\nExecStart=/bin/sleep infinity\n"
HEARTBEAT = "5s"
VARIANTS = ("units", "none")
PROCESSES = ("daemon", "systemd", "dbus-daemon")


def unit_names(count):
    """(units named in watch.units, units its glob takes, the glob)."""
    named = [f"cim-bench-{i:02}.service" for i in range(count // 2)]
    globbed = [f"cim-bench-glob-{i:02}.service" for i in range(count - count // 2)]
    return named, globbed, "cim-bench-glob-*.service"


def config_yaml(watched):
    watch = f"watch:\n  units: {json.dumps(watched)}\n" if watched else ""
    return machines.config_yaml(NODE, HEARTBEAT) + watch


def main_pid(machine, unit):
    return int(machine.succeed(f"systemctl show -p MainPID --value {unit}"))


def check_health(scenario, machine, units):
    """The daemon's health on NATS says it watches exactly `units`, all
    active (or, with no units, that it watches nothing)."""
    reply = scenario["eventually"](lambda: _health(scenario, machine), lambda h: h is not None,
                                   "health on NATS", timeout=30)
    checks = reply["checks"]
    if not units:
        if "units" in checks:
            raise RuntimeError(f"the daemon without watch.units has checks.units: {checks['units']}")
        return
    listed = scenario["listed"](checks.get("units", {"units": []}))
    if not checks.get("units", {}).get("watching") or sorted(listed) != sorted(units):
        raise RuntimeError(f"the daemon is not watching the {len(units)} units: {checks.get('units')}")
    inactive = [u for u, entry in listed.items() if entry["active_state"] != "active"]
    if inactive:
        raise RuntimeError(f"watched units not active: {inactive}")


def _health(scenario, machine):
    try:
        return scenario["nats_health"](machine, NODE)
    except Exception:  # Machine.succeed's failed command: not connected yet, no responder
        return None


def sample(proc, pids):
    return {name: threads_sample(pid, proc) for name, pid in pids.items()}


def measure(scenario, machine, watched, units, args):
    """{process: (CPU ms/s, voluntary/s, involuntary/s)} over the idle window."""
    machine.succeed(f"cat > /etc/cim-leaf/config.yaml <<'EOF'\n{config_yaml(watched)}EOF",
                    f"systemctl restart {LEAF}")
    check_health(scenario, machine, units if watched else [])
    pids = {"daemon": main_pid(machine, LEAF), "systemd": 1, "dbus-daemon": main_pid(machine, "dbus.service")}
    proc = f"/proc/{machine.container.init_pid}/root/proc"
    time.sleep(args.units_settle)
    before, t0 = sample(proc, pids), time.monotonic()
    time.sleep(args.units_idle)
    after, elapsed = sample(proc, pids), time.monotonic() - t0
    if main_pid(machine, LEAF) != pids["daemon"]:
        raise RuntimeError("the daemon was restarted during the idle window")
    return {name: ((after[name][0] - before[name][0]) / 1e6 / elapsed,
                   (after[name][1] - before[name][1]) / elapsed,
                   (after[name][2] - before[name][2]) / elapsed) for name in PROCESSES}


def interrupt(signum, frame):
    """A SIGTERM unwinds like Ctrl-C, through the finally that powers the container off."""
    raise KeyboardInterrupt(f"signal {signum}")


def run(args):
    """{variant: [per round {process: (cpu, voluntary, involuntary)}]}."""
    reason = machines.missing_prerequisites()
    if reason:
        raise RuntimeError(reason)
    if not machines.BINARY.exists():
        raise RuntimeError(f"{machines.BINARY} is not built (CIM_LEAF_BUILDDIR)")
    named, globbed, glob = unit_names(args.units)
    units = named + globbed
    watched = {"units": named + [glob], "none": []}
    scenario = machines.load_scenario("units")
    print(f"units: {len(units)} services ({len(named)} named, {len(globbed)} through {glob}), "
          f"heartbeat {HEARTBEAT}; {args.rounds} rounds, each: restart, health, "
          f"{args.units_settle:g} s settle, {args.units_idle:g} s idle", flush=True)
    previous = signal.signal(signal.SIGTERM, interrupt)
    containers = []
    try:
        with tempfile.TemporaryDirectory(prefix="cim-leaf-bench-units-") as tmp:
            files = {}
            for unit in units:
                (Path(tmp) / unit).write_text(SLEEPER)
                files[f"/etc/systemd/system/{unit}"] = (Path(tmp) / unit, 0o644)
            destdir = Path(tmp) / "destdir"
            destdir.mkdir()
            machine = machines.boot("units-bench", machines.prepare_rootfs(), machines.meson_install(destdir),
                                    config=config_yaml([]), files=files, started=containers.append)
            machine.log = lambda msg: None  # the Machine echoes every command: too much here
            scenario["ensure_up"](machine, machines.NATS_UNIT)
            machine.succeed(f"systemctl start {' '.join(units)}")
            results = {variant: [] for variant in VARIANTS}
            for round_ in range(args.rounds):
                for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                    results[variant].append(measure(scenario, machine, watched[variant], units, args))
                    daemon = results[variant][-1]["daemon"]
                    print(f"  round {round_ + 1} {variant}: daemon {daemon[1] + daemon[2]:.2f} switches/s, "
                          f"{daemon[0]:.3f} ms CPU/s", flush=True)
            return results
    finally:
        for container in containers:
            container.stop()
        signal.signal(signal.SIGTERM, previous)


# (label, value of (cpu ms/s, voluntary/s, involuntary/s), format)
METRICS = [
    ("context switches/s", lambda s: s[1] + s[2], "{:.2f}"),
    ("  of them involuntary", lambda s: s[2], "{:.2f}"),
    ("CPU (ms/s)", lambda s: s[0], "{:.3f}"),
]


def table(results):
    with_units, without = results["units"], results["none"]
    lines = [("idle, per second of the window", "with watch.units", "without", "ratio")]

    def cell(values, fmt):
        median, low, high = spread(values)
        return f"{fmt.format(median)} ({fmt.format(low)}–{fmt.format(high)})"
    for process in PROCESSES:
        for label, value, fmt in METRICS:
            a = [value(r[process]) for r in with_units]
            b = [value(r[process]) for r in without]
            ratio = "-"
            if all(b):
                median, low, high = paired(a, b)
                ratio = f"{median:.2f} ({low:.2f}–{high:.2f})"
            lines.append((f"{process}: {label}", cell(a, fmt), cell(b, fmt), ratio))
    print(f"medians (min–max) of {len(with_units)} rounds")
    print_table(lines)

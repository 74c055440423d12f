# Watched systemd units (watch.units, watch.critical) on one machine with a
# local nats-server (no JetStream: events are plain publishes) and cim-leaf
# configured with
#   heartbeat.interval: 1s
#   watch.units: WATCHED_UNITS
#   watch.critical: CRITICAL_UNITS
# and the demo units below installed but not started (each step starts them).
# NixOS: run_units(machine, nats_unit="nats.service")

# sleep infinity, Restart=no: SIGKILL leaves it failed.
DEMO_UNIT = "cim-demo-a.service"
# The same, in watch.critical.
CRITICAL_UNIT = "cim-demo-critical.service"
# sleep infinity with Restart=on-failure and RestartSec=2s: SIGKILL makes
# systemd restart it (auto-restart for 2 s, then NRestarts + 1).
RESTARTING_UNIT = "cim-demo-restarting.service"
DEMO_UNITS = [DEMO_UNIT, CRITICAL_UNIT, RESTARTING_UNIT]
# No unit matches it at boot; units_glob adds one at run time.
GLOB = "cim-glob-*.service"
WATCHED_UNITS = [*DEMO_UNITS, GLOB]
CRITICAL_UNITS = [CRITICAL_UNIT]
# Watched by the side daemon only: a name no unit has.
ABSENT_UNIT = "cim-demo-absent.service"

# The promise: a failure is an event within a second.
UNIT_EVENT_WITHIN_S = 1
# After systemd re-executes or the bus restarts: the daemon reconnects every
# second and re-reads everything; slack for a loaded VM host.
REWATCH_WITHIN_S = 10
# How long health, FailedUnits and STATUS= may lag behind the event.
SETTLE_S = 5

EVENTS_LOG = "/tmp/cim-units-events"
SIDE_UNIT = "cim-leaf-side.service"
SIDE_CONFIG = "/run/cim-leaf-side.yaml"
# Commands run under `set -euo pipefail`, on NixOS as on Debian.
STOP_SIDE = (f"systemctl stop {SIDE_UNIT} 2>/dev/null || true; "
             f"systemctl reset-failed {SIDE_UNIT} 2>/dev/null || true")


def health_with_units(machine, node):
    """node's health, asked on NATS, which must have checks.units."""
    reply = nats_health(machine, node)
    assert "units" in reply["checks"], f"health has no checks.units: {reply}"
    return reply


def listed(units):
    """unit name -> its entry in checks.units.units."""
    return {entry["unit"]: entry for entry in units["units"]}


def wait_for_units(machine, node, predicate, what, timeout=SETTLE_S):
    """node's health once predicate(health) holds."""
    return eventually(lambda: health_with_units(machine, node), predicate, what, timeout)


def units_up(machine, nats_unit):
    """The daemon connected, every demo unit running and reported ok."""
    node = ensure_up(machine, nats_unit)
    units = " ".join(DEMO_UNITS)
    machine.succeed(f"systemctl reset-failed {units} 2>/dev/null || true", f"systemctl start {units}")
    wait_for_units(machine, node, lambda h: h["checks"]["units"]["status"] == "ok",
                   "every watched unit ok", timeout=REWATCH_WITHIN_S)
    return node


def units_health(machine, nats_unit, **_):
    """checks.units lists every watched unit with its state; all running: ok, FailedUnits empty"""
    node = units_up(machine, nats_unit)
    reply = health_with_units(machine, node)
    units = reply["checks"]["units"]
    assert reply["status"] == "ok", reply
    assert units["watching"] is True and units["reason"] == "" and units["failed"] == [], units
    names = [entry["unit"] for entry in units["units"]]
    assert names == sorted(names) and set(DEMO_UNITS) <= set(names), units
    for unit in DEMO_UNITS:
        entry = listed(units)[unit]
        states = (entry["load_state"], entry["active_state"], entry["sub_state"])
        assert states == ("loaded", "active", "running"), entry
        assert entry["status"] == "ok" and entry["critical"] is (unit in CRITICAL_UNITS), entry
        assert isinstance(entry["restarts"], int) and entry["since"].endswith("Z"), entry
    assert health(machine)["checks"]["units"] == units, "GetHealth on D-Bus tells another story than NATS"
    assert bus_property(machine, "FailedUnits") == []
    assert "failed units" not in unit_property(machine, "StatusText")
    status = machine.succeed("cim-leaf status")
    assert re.search(r"^\s*units:", status, re.I | re.M), f"no units line in `cim-leaf status`:\n{status}"


def units_failed(machine, nats_unit, **_):
    """a watched unit killed: unit_failed within a second; health degraded; FailedUnits, STATUS= and `cim-leaf status` name it"""
    node = units_up(machine, nats_unit)
    with recording_events(machine, node, EVENTS_LOG) as path:
        killed_at = kill_unit(machine, DEMO_UNIT)
        event = wait_for_event(machine, path, "unit_failed", REWATCH_WITHIN_S, unit=DEMO_UNIT)
    made_after = rfc3339_s(event["time"]) - killed_at
    assert made_after <= UNIT_EVENT_WITHIN_S, f"unit_failed made {made_after:.3f} s after the kill: {event}"
    assert event["node"] == node, event
    data = event["data"]
    assert (data["active_state"], data["sub_state"], data["result"]) == ("failed", "failed", "signal"), data
    assert (data["exit_code"], data["exit_status"], data["critical"]) == ("killed", 9, False), data

    reply = wait_for_units(machine, node, lambda h: h["checks"]["units"]["failed"] == [DEMO_UNIT],
                           f"checks.units.failed == [{DEMO_UNIT}]")
    units = reply["checks"]["units"]
    assert reply["status"] == "degraded" and units["status"] == "degraded", reply
    entry = listed(units)[DEMO_UNIT]
    assert entry["active_state"] == "failed" and entry["status"] == "degraded", entry
    assert listed(units)[CRITICAL_UNIT]["status"] == "ok", units
    assert health(machine)["status"] == "degraded"
    eventually(lambda: bus_property(machine, "FailedUnits"), lambda value: value == [DEMO_UNIT],
               f"FailedUnits == [{DEMO_UNIT}]")
    eventually(lambda: unit_property(machine, "StatusText"), lambda text: f"failed units: {DEMO_UNIT}" in text,
               f"STATUS= naming {DEMO_UNIT}")
    status = machine.succeed("cim-leaf status")
    assert re.search(rf"^\s*units:.*{re.escape(DEMO_UNIT)}", status, re.I | re.M), status
    assert unit_property(machine, "ActiveState") == "active", "cim-leaf itself went down"


def units_recovered(machine, nats_unit, **_):
    """a failed unit restarted with systemctl: unit_recovered, health ok again, FailedUnits empty"""
    node = units_up(machine, nats_unit)
    kill_unit(machine, DEMO_UNIT)
    wait_for_units(machine, node, lambda h: h["checks"]["units"]["failed"] == [DEMO_UNIT], f"{DEMO_UNIT} failed")
    with recording_events(machine, node, EVENTS_LOG) as path:
        machine.succeed(f"systemctl restart {DEMO_UNIT}")
        event = wait_for_event(machine, path, "unit_recovered", REWATCH_WITHIN_S, unit=DEMO_UNIT)
        assert not [e for e in recorded_events(machine, path) if e["event_type"] == "unit_failed"], \
            "a restart by hand is no failure"
    data = event["data"]
    assert (data["active_state"], data["sub_state"]) == ("active", "running") and data["down_s"] >= 0, data
    reply = wait_for_units(machine, node, lambda h: h["status"] == "ok", "health ok again")
    assert reply["checks"]["units"]["failed"] == [], reply
    eventually(lambda: bus_property(machine, "FailedUnits"), lambda value: value == [], "FailedUnits empty")
    eventually(lambda: unit_property(machine, "StatusText"), lambda text: "failed units" not in text,
               "STATUS= without failed units")


def units_restarted(machine, nats_unit, **_):
    """a unit systemd restarts (Restart=on-failure): unit_failed while it waits, unit_restarted, unit_recovered"""
    node = units_up(machine, nats_unit)
    before = listed(health_with_units(machine, node)["checks"]["units"])[RESTARTING_UNIT]["restarts"]
    assert int(unit_property(machine, "NRestarts", RESTARTING_UNIT)) == before
    with recording_events(machine, node, EVENTS_LOG) as path:
        kill_unit(machine, RESTARTING_UNIT)
        failed = wait_for_event(machine, path, "unit_failed", REWATCH_WITHIN_S, unit=RESTARTING_UNIT)
        restarted = wait_for_event(machine, path, "unit_restarted", REWATCH_WITHIN_S, unit=RESTARTING_UNIT)
        recovered = wait_for_event(machine, path, "unit_recovered", REWATCH_WITHIN_S, unit=RESTARTING_UNIT)
    # systemd before 254 passes through failed on its way to auto-restart.
    assert failed["data"]["sub_state"] == "failed" or failed["data"]["sub_state"].startswith("auto-restart"), failed
    assert (failed["data"]["result"], failed["data"]["exit_code"]) == ("signal", "killed"), failed
    assert restarted["data"]["restarts"] == before + 1, (before, restarted)
    assert (restarted["data"]["result"], restarted["data"]["exit_status"]) == ("signal", 9), restarted
    assert failed["seq"] < restarted["seq"] and failed["seq"] < recovered["seq"], (failed, restarted, recovered)
    assert recovered["data"]["active_state"] == "active", recovered
    reply = wait_for_units(machine, node, lambda h: h["status"] == "ok", "health ok after systemd's restart")
    assert listed(reply["checks"]["units"])[RESTARTING_UNIT]["restarts"] == before + 1, reply


def units_critical(machine, nats_unit, **_):
    """a critical unit failed: unit_failed marked critical, health failing; restarted: ok"""
    node = units_up(machine, nats_unit)
    try:
        with recording_events(machine, node, EVENTS_LOG) as path:
            kill_unit(machine, CRITICAL_UNIT)
            event = wait_for_event(machine, path, "unit_failed", REWATCH_WITHIN_S, unit=CRITICAL_UNIT)
        assert event["data"]["critical"] is True, event
        reply = wait_for_units(machine, node, lambda h: h["status"] == "failing", "health failing")
        units = reply["checks"]["units"]
        assert units["status"] == "failing" and units["failed"] == [CRITICAL_UNIT], units
        assert listed(units)[CRITICAL_UNIT]["status"] == "failing", units
        assert health(machine)["status"] == "failing"
        assert bus_property(machine, "Healthy") is False
    finally:
        machine.succeed(f"systemctl restart {CRITICAL_UNIT}")
    wait_for_units(machine, node, lambda h: h["status"] == "ok", "health ok with the critical unit back")


def units_glob(machine, nats_unit, **_):
    """a unit matching a glob in watch.units, started after the daemon: listed, and its failure evented"""
    node = units_up(machine, nats_unit)
    # A unit file made now, in the runtime unit directory (writable on NixOS
    # too), with a name of its own per run: systemd has never loaded it.
    unit = f"cim-glob-{int(time.time())}.service"
    sleep = machine.succeed("readlink -f $(command -v sleep)").strip()
    machine.succeed(f"printf '[Service]\\nExecStart={sleep} infinity\\n' >/run/systemd/system/{unit}",
                    "systemctl daemon-reload")
    try:
        assert unit not in listed(health_with_units(machine, node)["checks"]["units"])
        machine.succeed(f"systemctl start {unit}")
        reply = wait_for_units(machine, node, lambda h: unit in listed(h["checks"]["units"]),
                               f"{unit} (matching {GLOB}) listed")
        entry = listed(reply["checks"]["units"])[unit]
        assert entry["active_state"] == "active" and entry["status"] == "ok", entry
        with recording_events(machine, node, EVENTS_LOG) as path:
            kill_unit(machine, unit)
            wait_for_event(machine, path, "unit_failed", REWATCH_WITHIN_S, unit=unit)
    finally:
        machine.succeed(f"systemctl stop {unit} || true; systemctl reset-failed {unit} 2>/dev/null || true",
                        f"rm -f /run/systemd/system/{unit}", "systemctl daemon-reload")
    wait_for_units(machine, node, lambda h: h["status"] == "ok", "health ok with the glob's unit gone")


def failure_still_seen(machine, node, when):
    """DEMO_UNIT killed: `node`'s daemon sends unit_failed and lists it failed, still watching."""
    with recording_events(machine, node, EVENTS_LOG) as path:
        kill_unit(machine, DEMO_UNIT)
        wait_for_event(machine, path, "unit_failed", REWATCH_WITHIN_S, unit=DEMO_UNIT)
    reply = wait_for_units(machine, node, lambda h: h["checks"]["units"]["failed"] == [DEMO_UNIT],
                           f"{DEMO_UNIT} failed {when}")
    assert reply["checks"]["units"]["watching"] is True, reply


def units_daemon_reexec(machine, nats_unit, **_):
    """systemctl daemon-reexec: the daemon keeps running and watching; a failure afterwards is unit_failed"""
    node = units_up(machine, nats_unit)
    pid = unit_property(machine, "MainPID")
    machine.succeed("systemctl daemon-reexec")
    assert unit_property(machine, "MainPID") == pid, "cim-leaf was restarted by the re-exec"
    failure_still_seen(machine, node, "after the re-exec")
    assert unit_property(machine, "MainPID") == pid


@contextlib.contextmanager
def side_daemon(machine, node, units):
    """A second cim-leaf, as a transient unit beside cim-leaf.service, with
    `dbus.bus: none` and watch.units = units. Its node id, while the block runs.

    Why a second daemon: with `dbus.bus: system` (cim-leaf.service here) the
    daemon exits when its own bus connection goes, and systemd restarts it,
    so a bus restart would test a fresh start, not the watcher's reconnect.
    With `dbus.bus: none` the only bus connection is the watcher's own (the
    system bus, whatever dbus.bus says); its health is asked on NATS."""
    side = f"{node}-side"
    config = {"node": {"id": side}, "nats": {"servers": [NATS_URL]}, "heartbeat": {"interval": "1s"},
              "dbus": {"bus": "none"}, "watch": {"units": units}}
    binary = machine.succeed("readlink -f $(command -v cim-leaf)").strip()
    machine.succeed(STOP_SIDE,
                    # JSON is YAML.
                    f"echo '{json.dumps(config)}' >{SIDE_CONFIG}", f"chmod 0644 {SIDE_CONFIG}",
                    # Returns once the daemon is ready (Type=notify): connected to NATS.
                    f"systemd-run --unit={SIDE_UNIT} --service-type=notify --uid=cim-leaf --gid=cim-leaf"
                    f" --property=StateDirectory=cim-leaf-side {binary} --config {SIDE_CONFIG}")
    try:
        yield side
    finally:
        machine.succeed(STOP_SIDE,
                        f"rm -f {SIDE_CONFIG}")


def units_dbus_restart(machine, nats_unit, **_):
    """the system bus restarted: the watch reconnects, and a failure afterwards is unit_failed"""
    node = units_up(machine, nats_unit)
    with side_daemon(machine, node, [DEMO_UNIT]) as side:
        wait_for_units(machine, side, lambda h: h["checks"]["units"]["watching"] and h["status"] == "ok",
                       "the side daemon watching, ok")
        pid = unit_property(machine, "MainPID", SIDE_UNIT)
        machine.succeed("systemctl restart dbus")
        # Killed maybe before the watcher is back: then its re-read finds the
        # difference, which is an event too.
        failure_still_seen(machine, side, "by the side daemon after the bus restart")
        assert unit_property(machine, "MainPID", SIDE_UNIT) == pid, "the side daemon was restarted"
    # cim-leaf.service itself lost its bus and was restarted by systemd.
    units_up(machine, nats_unit)


def units_not_found(machine, nats_unit, **_):
    """a watched unit that does not exist: listed as not-found (degraded), and the daemon runs on"""
    node = units_up(machine, nats_unit)
    with side_daemon(machine, node, [DEMO_UNIT, ABSENT_UNIT]) as side:
        reply = wait_for_units(machine, side, lambda h: ABSENT_UNIT in listed(h["checks"]["units"]),
                               f"{ABSENT_UNIT} listed")
        units = reply["checks"]["units"]
        entry = listed(units)[ABSENT_UNIT]
        assert (entry["load_state"], entry["active_state"]) == ("not-found", "inactive"), entry
        assert entry["status"] != "ok" and units["failed"] == [ABSENT_UNIT], units
        assert reply["status"] == "degraded" and units["status"] == "degraded", reply
        assert listed(units)[DEMO_UNIT]["status"] == "ok", units
        assert unit_property(machine, "ActiveState", SIDE_UNIT) == "active"


UNITS_STEPS = [units_health, units_failed, units_recovered, units_restarted, units_critical, units_glob,
               units_daemon_reexec, units_dbus_restart, units_not_found]


def run_units(machine, nats_unit="nats.service"):
    run_steps(machine, UNITS_STEPS, nats_unit=nats_unit)

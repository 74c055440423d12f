# Reload, watchdog, bad configuration, D-Bus policy, stop and the unit's
# hardening. NixOS:
#   run_lifecycle(machine, nats_unit="nats.service",
#                 apply_config=<fn>, can_write_bad_config=False)
# apply_config(machine, "fast") puts in place the same configuration with
# heartbeat.interval 1s (the base one beats every 5s or slower); it may
# reload the unit itself (a NixOS specialisation switch does), the step
# reloads explicitly anyway. The fast config then stays for the later steps.
# With can_write_bad_config the steps also write an invalid config.yaml
# (NixOS cannot: /etc/cim-leaf is in the store and checked at build time).
CONFIG = "/etc/cim-leaf/config.yaml"
MAX_EXPOSURE = 2.0


def fast_heartbeats(machine, node):
    """Five heartbeats within 8 s: only an interval of about 1 s does that."""
    return "timeout 8 " + nats(f"sub --raw --count=5 'cim.leaf.{node}.heartbeat'")


def break_config(machine):
    """An unknown key is a configuration error, whatever else the file says."""
    machine.succeed(f"cp {CONFIG} {CONFIG}.good", f"echo 'no_such_key: true' >> {CONFIG}")


def restore_config(machine):
    machine.succeed(f"mv {CONFIG}.good {CONFIG}")


def lifecycle_reload(machine, nats_unit, apply_config=None, **_):
    """systemctl reload applies a changed good config in the same process"""
    if apply_config is None:
        machine.log("no apply_config given: skipping")
        return
    node = ensure_up(machine, nats_unit)
    pid = unit_property(machine, "MainPID")
    machine.fail(fast_heartbeats(machine, node))
    apply_config(machine, "fast")
    machine.succeed(f"systemctl reload {LEAF}")
    machine.wait_until_succeeds(fast_heartbeats(machine, node), timeout=60)
    assert unit_property(machine, "MainPID") == pid, "reload restarted the daemon"
    assert unit_property(machine, "ActiveState") == "active"


def lifecycle_bad_reload(machine, nats_unit, can_write_bad_config=False, **_):
    """a reload with a bad config is rejected and the old one keeps running"""
    if not can_write_bad_config:
        machine.log("cannot write a bad config here: skipping")
        return
    node = ensure_up(machine, nats_unit)
    pid = unit_property(machine, "MainPID")
    capture_event(machine, node, "reload_failed", "/tmp/reload_failed.json")
    break_config(machine)
    try:
        machine.succeed(f"systemctl reload {LEAF}")
        read_event(machine, "/tmp/reload_failed.json", "reload_failed")
        wait_for_state(machine, "connected")
        machine.wait_until_succeeds(f"systemctl show -p SubState --value {LEAF} | grep -qx running")
        assert unit_property(machine, "MainPID") == pid, "a failed reload restarted the daemon"
        assert bus_property(machine, "LastError") != "", "LastError does not tell why"
        heartbeats(machine, node)
    finally:
        restore_config(machine)


def lifecycle_bad_start(machine, nats_unit, can_write_bad_config=False, **_):
    """a bad config at start: exit 78, failed once, not restarted in a loop"""
    if not can_write_bad_config:
        machine.log("cannot write a bad config here: skipping")
        return
    ensure_up(machine, nats_unit)
    machine.succeed(f"systemctl stop {LEAF}")
    since = machine.succeed("date +%s").strip()
    break_config(machine)
    try:
        machine.fail(f"systemctl start {LEAF}")
        # Longer than RestartSec: a restart would have happened by now.
        time.sleep(timespan_s(unit_property(machine, "RestartUSec")) + 3)
        assert unit_property(machine, "ActiveState") == "failed"
        assert unit_property(machine, "ExecMainStatus") == "78"
        assert unit_property(machine, "Result") == "exit-code"
        assert unit_property(machine, "NRestarts") == "0", "restarted despite EX_CONFIG"
        # The daemon says what is wrong, naming the key.
        machine.succeed(f"journalctl -u {LEAF} --since @{since} --no-pager | grep -q no_such_key")
    finally:
        restore_config(machine)
        machine.succeed(f"systemctl reset-failed {LEAF}")
    ensure_up(machine, nats_unit)


def lifecycle_watchdog(machine, nats_unit, **_):
    """a hung main loop is killed and restarted within WatchdogSec + RestartSec"""
    ensure_up(machine, nats_unit)
    pid = unit_property(machine, "MainPID")
    restarts = int(unit_property(machine, "NRestarts"))
    limit = timespan_s(unit_property(machine, "WatchdogUSec")) + timespan_s(unit_property(machine, "RestartUSec"))
    assert limit > 0, "the unit has no watchdog"
    started = time.monotonic()
    machine.succeed(f"kill -STOP {pid}")
    machine.wait_until_succeeds(
        f"test \"$(systemctl show -p MainPID --value {LEAF})\" != 0 && "
        f"test \"$(systemctl show -p MainPID --value {LEAF})\" != {pid}", timeout=int(limit) + 60)
    elapsed = time.monotonic() - started
    # Slack for the new process to start; the driver polls once a second.
    assert elapsed <= limit + 5, f"restarted after {elapsed:.1f}s, limit {limit:.0f}s"
    assert int(unit_property(machine, "NRestarts")) == restarts + 1
    machine.wait_for_unit(LEAF, timeout=60)
    wait_for_state(machine, "connected")


def lifecycle_policy(machine, nats_unit, **_):
    """on the system bus anyone reads and asks for health, only root reloads"""
    node = ensure_up(machine, nats_unit)
    assert bus_property(machine, "NodeId", as_nobody=True) == node
    assert bus_property(machine, "State", as_nobody=True) == "connected"
    report = health(machine, as_nobody=True)
    assert report["node"] == node and report["status"] == "ok", report
    bus_call(machine, "Ping", as_nobody=True)
    denied = machine.fail(f"{AS_NOBODY} busctl --system call {BUS_OBJECT} Reload 2>&1")
    assert "access denied" in denied.lower() or "AccessDenied" in denied, denied
    bus_call(machine, "Reload")
    wait_for_state(machine, "connected")
    assert unit_property(machine, "ActiveState") == "active"


def lifecycle_stop(machine, nats_unit, **_):
    """systemctl stop: a stopping event, exit 0, no error in the journal"""
    node = ensure_up(machine, nats_unit)
    since = machine.succeed("date +%s").strip()
    capture_event(machine, node, "stopping", "/tmp/stopping.json")
    machine.succeed(f"systemctl stop {LEAF}")
    read_event(machine, "/tmp/stopping.json", "stopping")
    assert unit_property(machine, "ExecMainStatus") == "0"
    assert unit_property(machine, "Result") == "success"
    errors = machine.succeed(f"journalctl -u {LEAF} -p err --since @{since} -q --no-pager")
    assert errors.strip() == "", f"error lines at stop:\n{errors}"
    ensure_up(machine, nats_unit)


def lifecycle_security(machine, nats_unit, **_):
    """systemd-analyze security rates the unit's exposure at most MAX_EXPOSURE"""
    out = machine.succeed(f"systemd-analyze security --no-pager {LEAF}")
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert m, out
    exposure = float(m.group(1))
    machine.log(f"exposure of {LEAF}: {exposure}")
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{out}"


LIFECYCLE_STEPS = [lifecycle_security, lifecycle_reload, lifecycle_bad_reload, lifecycle_bad_start,
                   lifecycle_watchdog, lifecycle_policy, lifecycle_stop]


def run_lifecycle(machine, nats_unit="nats.service", apply_config=None, can_write_bad_config=False):
    run_steps(machine, LIFECYCLE_STEPS, nats_unit=nats_unit, apply_config=apply_config,
              can_write_bad_config=can_write_bad_config)

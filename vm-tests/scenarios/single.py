# One machine with a local nats-server and cim-leaf.
# NixOS: run_single(machine, nats_unit="nats.service")


def single_ready(machine, nats_unit, **_):
    """start returns only after READY, and READY means connected"""
    ensure_up(machine, nats_unit)
    machine.succeed(f"systemctl restart {LEAF}")  # blocks until READY=1
    # No waiting from here on: READY must imply all of this.
    assert unit_property(machine, "ActiveState") == "active"
    assert bus_property(machine, "State") == "connected"
    assert bus_property(machine, "NatsConnected") is True
    status = unit_property(machine, "StatusText")
    assert is_connected_status(status), f"StatusText {status!r} does not say connected"

    # A server that accepts TCP but never speaks: the start job must wait.
    # (SIGSTOP rather than stopping the unit, which the leaf may Want.)
    nats_pid = unit_property(machine, "MainPID", nats_unit)
    machine.succeed(f"systemctl stop {LEAF}", f"kill -STOP {nats_pid}")
    try:
        machine.succeed(f"systemctl start --no-block {LEAF}")
        time.sleep(5)
        state = unit_property(machine, "ActiveState")
        assert state == "activating", f"unit is {state} while NATS is unreachable"
    finally:
        machine.succeed(f"kill -CONT {nats_pid}")
    machine.wait_for_unit(LEAF, timeout=60)
    assert bus_property(machine, "State") == "connected"


def single_journal(machine, nats_unit, **_):
    """journalctl -u cim-leaf has its lines, with priorities and CIM_NODE_ID"""
    node = ensure_up(machine, nats_unit)
    out = machine.succeed(f"journalctl -u {LEAF} -o json --no-pager")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    own = [e for e in entries if e.get("CIM_NODE_ID") == node]
    assert own, f"no journal entry of {LEAF} has CIM_NODE_ID={node}"
    priorities = {e.get("PRIORITY") for e in own}
    assert "6" in priorities, f"no info-level line among priorities {priorities}"
    assert all(p in list("01234567") for p in priorities), priorities
    machine.succeed(f"journalctl -u {LEAF} --no-pager | grep -q cim-leaf")


def single_nats(machine, nats_unit, **_):
    """heartbeats, health request-reply and the $SRV service protocol on NATS"""
    node = ensure_up(machine, nats_unit)
    first, second = heartbeats(machine, node, count=2)
    assert second["seq"] == first["seq"] + 1, (first, second)
    assert first["state"] == "connected", first
    for key in ("time", "version", "uptime_s", "labels"):
        assert key in first, f"heartbeat lacks {key}: {first}"

    for subject in (f"cim.leaf.{node}.health", "cim.leaf.health"):
        (health,) = parse_json_stream(machine.succeed(nats(f"req --raw {subject} ''")))
        assert health["type"] == "io.cim.leaf.v1.health" and health["node"] == node, health
        assert health["status"] == "ok", health
        assert {"nats", "dbus", "systemd"} <= set(health["checks"]), health

    assert "cim-leaf" in machine.succeed(nats("micro ls"))
    for verb in ("PING", "INFO", "STATS"):
        for subject in (f"$SRV.{verb}", f"$SRV.{verb}.cim-leaf"):
            replies = parse_json_stream(machine.succeed(nats(f"req --raw '{subject}' ''")))
            (reply,) = replies
            assert reply["type"] == f"io.nats.micro.v1.{verb.lower()}_response", reply
            assert reply["name"] == "cim-leaf" and isinstance(reply["metadata"], dict), reply
        if verb == "INFO":
            assert reply["endpoints"], reply
            by_id = parse_json_stream(machine.succeed(nats(f"req --raw '$SRV.INFO.cim-leaf.{reply['id']}' ''")))
            assert by_id[0]["id"] == reply["id"], by_id


def single_reconnect(machine, nats_unit, **_):
    """NATS stopped: reconnecting on D-Bus and in STATUS; started: connected, heartbeats resume"""
    node = ensure_up(machine, nats_unit)
    (before,) = heartbeats(machine, node)
    reconnects = bus_property(machine, "Reconnects")

    machine.succeed(f"systemctl stop {nats_unit}")
    wait_for_state(machine, "reconnecting", timeout=30)
    assert bus_property(machine, "NatsConnected") is False
    status = unit_property(machine, "StatusText")
    assert "reconnect" in status.lower(), f"StatusText {status!r} does not say reconnecting"
    assert unit_property(machine, "ActiveState") == "active"

    machine.succeed(f"systemctl start {nats_unit}")
    wait_for_state(machine, "connected", timeout=60)
    assert is_connected_status(unit_property(machine, "StatusText"))
    (after,) = heartbeats(machine, node)
    assert after["seq"] > before["seq"], (before, after)
    assert bus_property(machine, "Reconnects") > reconnects


SINGLE_STEPS = [single_ready, single_journal, single_nats, single_reconnect]


def run_single(machine, nats_unit="nats.service"):
    run_steps(machine, SINGLE_STEPS, nats_unit=nats_unit)

# A hub running nats-server with JetStream and leaves whose cim-leaf points
# at it (their events go to the hub's stream, CIM_LEAF_EVENTS by default).
# NATS commands run on the hub, against its local server.
# NixOS: run_fleet(hub, [leaf1, leaf2], nats_unit="nats.service")


def fleet_up(machines, nats_unit):
    """Node ids of the leaves, once the hub serves and every leaf is connected."""
    hub, leaves = machines[0], machines[1:]
    hub.start()
    hub.wait_for_unit(nats_unit, timeout=300)
    hub.wait_for_open_port(NATS_PORT, "127.0.0.1", timeout=60)
    nodes = []
    for leaf in leaves:
        leaf.start()
        leaf.wait_for_unit(LEAF, timeout=120)
        wait_for_state(leaf, "connected")
        nodes.append(bus_property(leaf, "NodeId"))
    assert len(set(nodes)) == len(leaves), f"node ids are not unique: {nodes}"
    return hub, leaves, nodes


def fleet_fanout(machines, nats_unit, **_):
    """one request on cim.leaf.health gets an answer from every leaf"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    # --replies=0: every answer until the timeout (with a count, natscli gives
    # up on the next answer after 300 ms, too short for a loaded VM host).
    out = hub.succeed(nats("req --raw --replies=0 --timeout=5s cim.leaf.health ''"))
    answers = parse_json_stream(out)
    assert sorted(a["node"] for a in answers) == sorted(nodes), answers
    assert all(a["status"] == "ok" for a in answers), answers


def fleet_hub_outage(machines, nats_unit, **_):
    """hub down: every leaf is reconnecting; hub up: connected, heartbeats resume"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    before = {node: heartbeats(hub, node)[0]["seq"] for node in nodes}
    hub.succeed(f"systemctl stop {nats_unit}")
    for leaf in leaves:
        wait_for_state(leaf, "reconnecting", timeout=30)
        assert unit_property(leaf, "ActiveState") == "active"
    hub.succeed(f"systemctl start {nats_unit}")
    hub.wait_for_open_port(NATS_PORT, "127.0.0.1", timeout=60)
    for leaf in leaves:
        wait_for_state(leaf, "connected", timeout=60)
    for node in nodes:
        (beat,) = heartbeats(hub, node)
        assert beat["seq"] > before[node], (node, before[node], beat)


def stream_record(hub, nodes):
    """node -> its events in the hub's stream, after checking that each node's
    are seq 1, 2, 3, ... in stream order (no gap, none twice), and that every
    event is there once, on its own subject, with Nats-Msg-Id = event_id."""
    messages = stream_messages(hub)
    ids = [event["event_id"] for _, _, event in messages]
    assert len(ids) == len(set(ids)), f"an event is in the stream more than once: {ids}"
    for subject, headers, event in messages:
        assert subject == f"cim.leaf.{event['node']}.events.{event['event_type']}", (subject, event)
        assert headers.get("Nats-Msg-Id") == event["event_id"], (headers, event)
    record = {}
    for node in nodes:
        record[node] = [event for _, _, event in messages if event["node"] == node]
        seqs = [event["seq"] for event in record[node]]
        assert seqs == list(range(1, len(seqs) + 1)), f"{node}'s events in the stream, by seq: {seqs}"
    return record


def fleet_outage_events(machines, nats_unit, **_):
    """events made while the hub is down, also across a leaf's restart, reach the hub's stream once, in seq order"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    for leaf in leaves:
        wait_for_pending(leaf, 0)
        events = health(leaf)["checks"]["events"]
        assert events["delivery"] == "jetstream" and events["stream"] == EVENTS_STREAM, events
        assert events["durable"] is True, events
    delivered = {node: len(events) for node, events in stream_record(hub, nodes).items()}

    hub.succeed(f"systemctl stop {nats_unit}")
    # Each leaf reloads: reloading and reloaded wait in its spool.
    made = {}
    for leaf, node in zip(leaves, nodes):
        wait_for_state(leaf, "reconnecting", timeout=30)
        leaf.succeed(f"systemctl reload {LEAF}")
        wait_for_pending(leaf, 2)
        made[node] = ["reloading", "reloaded"]
    # The last one is restarted too: the new process (activating, as READY
    # waits for NATS) has what the old one left in the spool, its stopping
    # included, and its own started.
    restarted = leaves[-1]
    pid = unit_property(restarted, "MainPID")
    restarted.succeed(f"systemctl restart --no-block {LEAF}")
    made[nodes[-1]] += ["stopping", "started"]
    wait_for_pending(restarted, len(made[nodes[-1]]))
    assert unit_property(restarted, "MainPID") not in ("0", pid), "the leaf was not restarted"
    until = {}
    for leaf, node in zip(leaves, nodes):
        events = health(leaf)["checks"]["events"]
        assert events["pending"] == len(made[node]) and events["durable"] is True, events
        # The spool is the unit's StateDirectory=, the daemon's alone.
        assert events["spool"].startswith("/var/lib/cim-leaf/"), events
        owners = leaf.succeed(f"stat -c '%U %a' /var/lib/cim-leaf {events['spool']}").split()
        assert owners == ["cim-leaf", "700", "cim-leaf", "600"], owners
        until[node] = leaf.succeed("date -u +%Y-%m-%dT%H:%M:%S.%3NZ").strip()

    hub.succeed(f"systemctl start {nats_unit}")
    hub.wait_for_open_port(NATS_PORT, "127.0.0.1", timeout=60)
    for leaf in leaves:
        leaf.wait_for_unit(LEAF, timeout=120)
        wait_for_state(leaf, "connected", timeout=60)
        wait_for_pending(leaf, 0)
    record = stream_record(hub, nodes)
    for node in nodes:
        # Right after what the stream had: the events of the outage, with
        # the time they were made (RFC 3339 UTC: comparable as text).
        outage = record[node][delivered[node]:delivered[node] + len(made[node])]
        assert [event["event_type"] for event in outage] == made[node], (node, record[node][delivered[node]:])
        assert all(event["time"] <= until[node] for event in outage), (until[node], outage)
        assert outage[1]["causation_id"] == outage[0]["event_id"], outage


FLEET_STEPS = [fleet_fanout, fleet_hub_outage, fleet_outage_events]


def run_fleet(hub, leaves, nats_unit="nats.service"):
    run_steps([hub, *leaves], FLEET_STEPS, nats_unit=nats_unit)

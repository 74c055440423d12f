# A hub running nats-server and leaves whose cim-leaf points at it. NATS
# commands run on the hub, against its local server.
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


FLEET_STEPS = [fleet_fanout, fleet_hub_outage]


def run_fleet(hub, leaves, nats_unit="nats.service"):
    run_steps([hub, *leaves], FLEET_STEPS, nats_unit=nats_unit)

# The CIM leaf topology: a hub running nats-server with a leafnode port and
# JetStream in domain `hub`, and leaves that each run their own nats-server
# as a leaf node of the hub (JetStream domain = node id, monitoring on the
# loopback) with cim-leaf on it (events.stream.domain = node id,
# uplink.monitor_url). NATS commands about the fleet run on the hub, against
# its local server; those about a leaf's own stream on that leaf.
# NixOS: run_fleet(hub, [leaf1, leaf2], nats_unit="nats.service")

HUB_DOMAIN = "hub"
# The hub's stream sourcing every leaf's EVENTS_STREAM (README: "The uplink,
# and the hub's view of the events").
FLEET_STREAM = "CIM_FLEET_EVENTS"
# How soon a leaf says its uplink is down once the hub is: the leaf node sees
# the connection close at once, and the daemon asks /leafz every
# uplink.interval (1 s in these tests) and waits at most that for an answer.
UPLINK_DOWN_WITHIN_S = 10
# A service on each leaf (sleep infinity, Restart=no) in watch.units, beside
# the leaf node's own unit that services.cim-leaf.hub adds there.
FLEET_WATCHED_UNIT = "cim-demo.service"


def wait_for_uplink(machine, connected, timeout=60):
    machine.wait_until_succeeds(
        f"busctl --system get-property {BUS_OBJECT} UplinkConnected | grep -qx 'b {str(connected).lower()}'",
        timeout=timeout)


def hub_up(hub, nats_unit):
    hub.succeed(f"systemctl start {nats_unit}")
    hub.wait_for_open_port(NATS_PORT, "127.0.0.1", timeout=60)


def fleet_up(machines, nats_unit):
    """Node ids of the leaves, once the hub serves and every leaf is connected
    to its own leaf node, whose uplink to the hub is up."""
    hub, leaves = machines[0], machines[1:]
    hub.start()
    hub.wait_for_unit("multi-user.target", timeout=300)
    hub_up(hub, nats_unit)
    nodes = []
    for leaf in leaves:
        leaf.start()
        leaf.wait_for_unit("multi-user.target", timeout=300)
        leaf.succeed(f"systemctl reset-failed {FLEET_WATCHED_UNIT} 2>/dev/null || true",
                     f"systemctl start {nats_unit} {LEAF} {FLEET_WATCHED_UNIT}")
        wait_for_state(leaf, "connected")
        wait_for_uplink(leaf, True)
        nodes.append(bus_property(leaf, "NodeId"))
    assert len(set(nodes)) == len(leaves), f"node ids are not unique: {nodes}"
    return hub, leaves, nodes


def fleet_fanout(machines, nats_unit, **_):
    """one request on the hub's cim.leaf.health gets an answer from every leaf, through its leaf node"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    # --replies=0: every answer until the timeout (with a count, natscli gives
    # up on the next answer after 300 ms, too short for a loaded VM host).
    out = hub.succeed(nats("req --raw --replies=0 --timeout=5s cim.leaf.health ''"))
    answers = parse_json_stream(out)
    assert sorted(a["node"] for a in answers) == sorted(nodes), answers
    for answer in answers:
        assert answer["status"] == "ok", answer
        assert answer["checks"]["nats"]["server"] == NATS_URL, answer
        uplink = answer["checks"]["uplink"]
        assert uplink["state"] == "up" and uplink["remotes"][0]["url"].endswith(":7422"), uplink


def fleet_hub_outage(machines, nats_unit, **_):
    """hub down: every leaf stays connected to its own leaf node, says its uplink is down and keeps its events; hub up: uplink up, heartbeats reach the hub again"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    before = {node: heartbeats(hub, node)[0]["seq"] for node in nodes}
    hub.succeed(f"systemctl stop {nats_unit}")
    for leaf, node in zip(leaves, nodes):
        wait_for_uplink(leaf, False, timeout=UPLINK_DOWN_WITHIN_S)
        state = health(leaf)
        assert state["state"] == "connected" and state["status"] == "degraded", state
        assert state["checks"]["uplink"]["state"] == "down" and not state["checks"]["uplink"]["connected"], state
        assert "uplink to the hub down since" in unit_property(leaf, "StatusText")
        # The leaf goes on working on its own: it answers on its leaf node,
        # and its stream there acknowledges what it makes.
        (answer,) = parse_json_stream(leaf.succeed(nats(f"req --raw cim.leaf.{node}.health ''")))
        assert answer["node"] == node and answer["checks"]["uplink"]["state"] == "down", answer
        leaf.succeed(f"systemctl reload {LEAF}")
        wait_for_pending(leaf, 0)
        assert unit_property(leaf, "ActiveState") == "active"
    hub_up(hub, nats_unit)
    for leaf in leaves:
        wait_for_uplink(leaf, True)
        assert health(leaf)["status"] == "ok"
    for node in nodes:
        (beat,) = heartbeats(hub, node)
        assert beat["seq"] > before[node], (node, before[node], beat)


def ensure_fleet_stream(hub, nodes):
    """The hub's stream sourcing each leaf's stream across domains; creating
    it again with the same config is a no-op."""
    config = {"name": FLEET_STREAM, "storage": "file",
              "sources": [{"name": EVENTS_STREAM, "external": {"api": f"$JS.{node}.API", "deliver": ""}}
                          for node in sorted(nodes)]}
    create = nats(f"req --raw '$JS.{HUB_DOMAIN}.API.STREAM.CREATE.{FLEET_STREAM}' '{json.dumps(config)}'")
    for _ in range(60):  # JetStream may still be starting with the server
        (reply,) = parse_json_stream(hub.succeed(create))
        if "error" not in reply:
            return
        time.sleep(1)
    raise AssertionError(f"cannot create {FLEET_STREAM}: {reply}")


def stream_counts(machine, stream):
    """subject -> number of messages of the stream on machine's server."""
    request = nats(f"""req --raw '$JS.API.STREAM.INFO.{stream}' '{{"subjects_filter": ">"}}'""")
    (reply,) = parse_json_stream(machine.succeed(request))
    assert "error" not in reply, f"stream {stream}: {reply}"
    return reply["state"].get("subjects", {})


def leaf_events(leaf, node):
    """The node's events in its own leaf's stream, after checking that it
    holds only this node's, each once, seq 1, 2, 3, ... in stream order."""
    messages = stream_messages(leaf)
    events = [event for _, _, event in messages]
    assert all(event["node"] == node for event in events), f"another node's events in {node}'s stream: {events}"
    ids = [event["event_id"] for event in events]
    assert len(ids) == len(set(ids)), f"an event is in {node}'s stream more than once: {ids}"
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1)), events
    for subject, headers, event in messages:
        assert subject == f"cim.leaf.{node}.events.{event['event_type']}", (subject, event)
        assert headers.get("Nats-Msg-Id") == event["event_id"], (headers, event)
    return events


def fleet_record(hub, leaves, nodes, timeout=120):
    """node -> its events, once the hub's stream holds exactly what each
    leaf's stream holds: every event, once, in the leaf's order."""
    own = {node: leaf_events(leaf, node) for leaf, node in zip(leaves, nodes)}
    expected = {node: len(events) for node, events in own.items()}

    def counts():
        per_node = dict.fromkeys(nodes, 0)
        for subject, count in stream_counts(hub, FLEET_STREAM).items():
            per_node[subject.split(".")[2]] += count
        return per_node
    deadline = time.monotonic() + timeout
    while counts() != expected:
        assert time.monotonic() < deadline, f"the hub's stream has {counts()} events, the leaves {expected}"
        time.sleep(1)
    aggregated = [event for _, _, event in stream_messages(hub, FLEET_STREAM)]
    for node in nodes:
        mine = [event["event_id"] for event in aggregated if event["node"] == node]
        assert mine == [event["event_id"] for event in own[node]], (node, mine, own[node])
    return own


def fleet_outage_events(machines, nats_unit, **_):
    """events made while the hub is down, also across a leaf's restart, are acknowledged by the leaf's own stream and in the hub's stream afterwards, each once, in seq order"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    ensure_fleet_stream(hub, nodes)
    for leaf in leaves:
        wait_for_pending(leaf, 0)
        events = health(leaf)["checks"]["events"]
        assert events["delivery"] == "jetstream" and events["stream"] == EVENTS_STREAM, events
        assert events["durable"] is True, events
    delivered = {node: len(events) for node, events in fleet_record(hub, leaves, nodes).items()}

    hub.succeed(f"systemctl stop {nats_unit}")
    made = {}
    until = {}
    for leaf, node in zip(leaves, nodes):
        wait_for_uplink(leaf, False, timeout=UPLINK_DOWN_WITHIN_S)
        leaf.succeed(f"systemctl reload {LEAF}")
        made[node] = ["uplink_lost", "reloading", "reloaded"]
    # The last one is restarted too: the new process starts and is ready on
    # its leaf node while the hub is still away.
    restarted = leaves[-1]
    pid = unit_property(restarted, "MainPID")
    restarted.succeed(f"systemctl restart {LEAF}")
    assert unit_property(restarted, "MainPID") not in ("0", pid), "the leaf was not restarted"
    made[nodes[-1]] += ["stopping", "started", "ready"]
    for leaf, node in zip(leaves, nodes):
        wait_for_pending(leaf, 0)  # acknowledged by the leaf's own stream
        # The spool is the unit's StateDirectory=, the daemon's alone.
        spool = health(leaf)["checks"]["events"]["spool"]
        assert spool.startswith("/var/lib/cim-leaf/"), spool
        owners = leaf.succeed(f"stat -c '%U %a' /var/lib/cim-leaf {spool}").split()
        assert owners == ["cim-leaf", "700", "cim-leaf", "600"], owners
        outage = leaf_events(leaf, node)[delivered[node]:]
        assert [event["event_type"] for event in outage] == made[node], (node, outage)
        until[node] = leaf.succeed("date -u +%Y-%m-%dT%H:%M:%S.%3NZ").strip()

    hub_up(hub, nats_unit)
    for leaf in leaves:
        wait_for_uplink(leaf, True)
        wait_for_pending(leaf, 0)
    record = fleet_record(hub, leaves, nodes)
    for node in nodes:
        # Right after what the hub had: the events of the outage, with the
        # time they were made (RFC 3339 UTC: comparable as text), then the
        # uplink's return.
        after = record[node][delivered[node]:]
        assert [event["event_type"] for event in after[:len(made[node])]] == made[node], (node, after)
        assert all(event["time"] <= until[node] for event in after[:len(made[node])]), (until[node], after)
        assert "uplink_restored" in [event["event_type"] for event in after[len(made[node]):]], (node, after)
        reloading, reloaded = after[1:3]
        assert reloaded["causation_id"] == reloading["event_id"], after


def fleet_view(machines, nats_unit, **_):
    """`cim-leaf fleet --expect N` on the hub shows every leaf, and fails when one more is expected"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    # Exit 0 when the N expected leaves answer and none is failing, one line
    # per leaf with the node id as its first word; 1 when one more is expected.
    out = hub.succeed(f"cim-leaf fleet --server {NATS_URL} --expect {len(nodes)}")
    for node in nodes:
        lines = [line for line in out.splitlines() if line.split()[:1] == [node]]
        assert len(lines) == 1, f"{node} is not on one line of:\n{out}"
    hub.fail(f"cim-leaf fleet --server {NATS_URL} --expect {len(nodes) + 1} --timeout 2s")


def fleet_unit_failed(machines, nats_unit, **_):
    """a watched unit killed on a leaf: unit_failed reaches the hub, and `cim-leaf fleet` there shows the leaf degraded with a line naming the unit"""
    hub, leaves, nodes = fleet_up(machines, nats_unit)
    leaf, node = leaves[0], nodes[0]
    try:
        with recording_events(hub, node, "/tmp/cim-fleet-unit-events") as path:
            kill_unit(leaf, FLEET_WATCHED_UNIT)
            event = wait_for_event(hub, path, "unit_failed", 10, unit=FLEET_WATCHED_UNIT)
        assert event["node"] == node and event["data"]["exit_code"] == "killed", event

        def rows(out):
            """node -> the words of its row in the table"""
            words = [line.split() for line in out.splitlines()]
            return {row[0]: row for row in words if row and row[0] in nodes}
        # Degraded is not failing: the command still exits 0.
        out = eventually(lambda: hub.succeed(f"cim-leaf fleet --server {NATS_URL} --expect {len(nodes)}"),
                         lambda text: "degraded" in rows(text).get(node, []), f"{node} degraded in the fleet view")
        assert all(rows(out)[other][1] == "ok" for other in nodes[1:]), out
        problems = [line for line in out.splitlines() if line.startswith(f"{node}: units:")]
        assert len(problems) == 1 and FLEET_WATCHED_UNIT in problems[0], f"no units line naming the unit:\n{out}"
    finally:
        leaf.succeed(f"systemctl restart {FLEET_WATCHED_UNIT}")


FLEET_STEPS = [fleet_fanout, fleet_hub_outage, fleet_outage_events, fleet_view, fleet_unit_failed]


def run_fleet(hub, leaves, nats_unit="nats.service"):
    run_steps([hub, *leaves], FLEET_STEPS, nats_unit=nats_unit)

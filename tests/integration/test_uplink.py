"""The CIM leaf topology on loopback: the daemon on its leaf's own
nats-server (a leaf node of the hub, JetStream in its own domain) watches
the uplink through /leafz, keeps its events in the leaf's stream while the
hub is away, and the hub gets them all by sourcing that stream."""
import re
import signal
import socket
import threading
import time

import pytest

from harness import leaf_config, start_ready, wait_until
from nats_client import Client, NatsError
from payloads import health as health_on, valid
from test_events import assert_complete, stream_events
from topology import Hub, LeafServer, aggregate, leaf_settings

NODE = "leaf-01"


@pytest.fixture(autouse=True)
def _nats_js(js_client):
    """stream.mjs needs nats.js."""


@pytest.fixture
def hub(tmp_path):
    server = Hub(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def leaf_server(tmp_path, hub):
    server = LeafServer(tmp_path, hub, NODE).start()
    yield server
    server.stop()


def health(server, node=NODE):
    with Client(server.port) as client:
        return health_on(client, f"cim.leaf.{node}.health")


def uplink_state(server):
    try:
        return health(server)["checks"]["uplink"]
    except (NatsError, TimeoutError, OSError):
        return None


def start_leaf(daemons, notify, leaf_server, **extra):
    config = leaf_config(None, node_id=leaf_server.node, **leaf_settings(leaf_server))
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value}
    return start_ready(daemons, notify, config)


def test_the_uplink_in_health_and_events_while_the_hub_is_away(daemons, notify, hub, leaf_server):
    leaf = start_leaf(daemons, notify, leaf_server)
    wait_until(lambda: (uplink_state(leaf_server) or {}).get("state") == "up", 10, what="the uplink up")
    up = uplink_state(leaf_server)
    assert up["connected"] and up["remotes"][0]["url"] == hub.leafnode_url and up["status"] == "ok"
    assert health(leaf_server)["status"] == "ok"

    hub.kill()
    began = time.monotonic()
    wait_until(lambda: uplink_state(leaf_server)["state"] == "down", 5, interval=0.05, what="the uplink down")
    # The stated bound: one poll interval (250 ms) plus one answer (250 ms), and the server noticing.
    assert time.monotonic() - began < 1.5
    state = health(leaf_server)
    assert (state["status"], state["checks"]["uplink"]["status"]) == ("degraded", "degraded")
    assert any("uplink to the hub down since" in f.get("STATUS", "") for _, f, _ in notify.snapshot())
    # The leaf's stream goes on acknowledging events.
    leaf.signal(signal.SIGHUP)
    wait_until(lambda: health(leaf_server)["checks"]["events"]["pending"] == 0, 10, what="acknowledged")
    assert health(leaf_server)["checks"]["events"]["delivery"] == "jetstream"

    hub.start()
    wait_until(lambda: uplink_state(leaf_server)["state"] == "up", 15, what="the uplink back")
    events = stream_events(leaf_server, domain=NODE)
    types = [e["event_type"] for e in events]
    assert types.index("uplink_lost") < types.index("reloading") < types.index("uplink_restored")
    lost = events[types.index("uplink_lost")]
    assert lost["data"]["remotes"] == [hub.leafnode_url]
    assert leaf.stop() == 0


def test_the_hub_sources_every_event_exactly_once(daemons, notify, hub, leaf_server):
    leaf = start_leaf(daemons, notify, leaf_server)
    with Client(hub.port) as client:
        aggregate(client, hub, [NODE])
    hub.kill()
    wait_until(lambda: uplink_state(leaf_server)["state"] == "down", 5, what="the uplink down")
    for _ in range(3):  # events made while the hub is away
        leaf.signal(signal.SIGHUP)
        time.sleep(0.1)
    wait_until(lambda: health(leaf_server)["checks"]["events"]["pending"] == 0, 10, what="acknowledged by the leaf")
    hub.start()
    wait_until(lambda: uplink_state(leaf_server)["state"] == "up", 15, what="the uplink back")
    leaf.signal(signal.SIGHUP)
    wait_until(lambda: health(leaf_server)["checks"]["events"]["pending"] == 0, 10, what="acknowledged")
    on_leaf = stream_events(leaf_server, domain=NODE)

    def on_hub():
        return stream_events(hub, stream="CIM_FLEET_EVENTS", domain=hub.name)
    wait_until(lambda: len(on_hub()) == len(on_leaf), 20, interval=0.5, what="the hub to catch up")
    aggregated = on_hub()
    assert [e["event_id"] for e in aggregated] == [e["event_id"] for e in on_leaf]
    assert_complete(aggregated)
    assert "uplink_lost" in [e["event_type"] for e in aggregated]
    assert leaf.stop() == 0


class Endpoint:
    """A fake monitoring endpoint: `behaviour` is "garbage" (HTTP 200, not
    JSON), "error" (HTTP 500), "silent" (accepts, never answers), "refused"
    (nobody listens), "hangup" (closes without a word), "not-http" (answers
    something else), "endless" (HTTP 200 and a body that never ends) or
    "ipv6" (garbage, on [::1] only, named as localhost)."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        family, host = (socket.AF_INET6, "::1") if behaviour == "ipv6" else (socket.AF_INET, "127.0.0.1")
        self.sock = socket.socket(family)
        try:
            self.sock.bind((host, 0))
        except OSError as e:  # a machine without IPv6 on its loopback
            pytest.skip(f"cannot listen on [{host}]: {e}")
        self.url = f"http://{'localhost' if behaviour == 'ipv6' else host}:{self.sock.getsockname()[1]}"
        self.held = []
        if behaviour != "refused":  # bound, never listening: connections are refused
            self.sock.listen(16)
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.behaviour == "silent":
                self.held.append(client)
                continue
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client):
        with client:
            try:
                client.recv(65536)
                if self.behaviour == "hangup":
                    return
                if self.behaviour == "not-http":
                    client.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                    return
                if self.behaviour == "endless":
                    client.sendall(b"HTTP/1.0 200 OK\r\n\r\n{\"leafs\": [")
                    while True:
                        client.sendall(b"{}," * 65536)
                body = b"{}" if self.behaviour == "error" else b"<html>oops</html>"
                status = b"500 Internal Server Error" if self.behaviour == "error" else b"200 OK"
                client.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() +
                               b"\r\nConnection: close\r\n\r\n" + body)
            except OSError:  # the daemon hung up: what "endless" waits for
                pass

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("behaviour,reason", [
    ("garbage", "/leafz: the answer is not JSON"),
    ("error", "/leafz answered HTTP 500"),
    ("silent", "no answer from http://127.0.0.1:[0-9]+ within 1000 ms"),
    ("refused", "http://127.0.0.1:[0-9]+: cannot connect: Connection refused"),
    ("hangup", "http://127.0.0.1:[0-9]+: closed the connection without an answer"),
    ("not-http", "http://127.0.0.1:[0-9]+: the answer is not HTTP"),
    ("endless", "http://127.0.0.1:[0-9]+: the answer is over [0-9]+ bytes"),
    ("ipv6", "http://localhost:[0-9]+/leafz: the answer is not JSON"),  # 127.0.0.1 refused, then [::1]
])
def test_an_endpoint_that_fails_makes_the_uplink_unknown_and_nothing_else(daemons, notify, nats_server,
                                                                           behaviour, reason):
    import re
    endpoint = Endpoint(behaviour)
    try:
        # 1 s, also the bound of an answer: a loaded machine delays this
        # Python endpoint's answers by hundreds of milliseconds.
        config = leaf_config(nats_server, uplink={"monitor_url": endpoint.url, "interval": "1s"})
        leaf = daemons(config, notify=notify).start()
        notify.wait_for("READY", "1", timeout=10)
        wait_until(lambda: uplink_state(nats_server)["state"] == "unknown" and uplink_state(nats_server)["reason"],
                   5, what="the uplink unknown")
        state = health(nats_server)
        uplink = state["checks"]["uplink"]
        assert re.search(reason, uplink["reason"]), uplink
        assert (uplink["status"], uplink["connected"], state["status"]) == ("unknown", False, "degraded")
        assert all(state["checks"][c]["status"] == "ok" for c in ("nats", "events", "dbus", "systemd", "config"))
        with Client(nats_server.port) as client:  # heartbeats go on, on time
            client.subscribe("cim.leaf.leaf-01.heartbeat")
            beats = [valid("heartbeat", m.data)["seq"] for m in client.messages(3, timeout=3)]
        assert beats == list(range(beats[0], beats[0] + 3))
        assert leaf.output().count("the uplink's state is unknown") == 1  # said once
        assert leaf.stop() == 0
    finally:
        endpoint.close()


def test_without_monitor_url_there_is_no_uplink_check(daemons, notify, nats_server):
    daemons(leaf_config(nats_server), notify=notify).start()
    notify.wait_for("READY", "1", timeout=10)
    assert "uplink" not in health(nats_server)["checks"]


def test_uplink_connected_on_dbus(daemons, notify, session_bus, hub, leaf_server):
    env = {"DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    config = leaf_config(None, node_id=NODE, **leaf_settings(leaf_server))
    config["dbus"] = {"bus": "session"}
    leaf = daemons(config, notify=notify, env=env).start()
    notify.wait_for("READY", "1", timeout=10)

    def connected():
        return session_bus.busctl("get-property", "org.cim.Leaf1", "/org/cim/Leaf1", "org.cim.Leaf1",
                                  "UplinkConnected").stdout.strip()
    wait_until(lambda: connected() == "b true", 10, what="UplinkConnected true")
    hub.kill()
    wait_until(lambda: connected() == "b false", 10, what="UplinkConnected false")
    assert leaf.stop() == 0

"""The daemon on NATS, against a real nats-server on a loopback port and an
independent client (tests/lib/nats_client.py; nats.js for $SRV). Every
payload received is checked against proto/nats/*.schema.json."""
import json
import signal
import subprocess
import time

import pytest

from harness import ROOT, NatsServer, free_port, leaf_config, make_certificates, start_leaf, tls_server, wait_until
from nats_client import Client
from payloads import health, valid


def test_heartbeats_at_the_configured_rate_with_increasing_seq(daemons, notify, nats_server):
    with Client(nats_server.port) as client:
        client.subscribe("cim.leaf.leaf-01.heartbeat")
        start_leaf(daemons, notify, nats_server, heartbeat={"interval": "200ms"})
        first = time.monotonic()
        beats = [valid("heartbeat", m.data) for m in client.messages(10, timeout=5)]
        elapsed = time.monotonic() - first
    assert [b["seq"] for b in beats] == list(range(1, 11))
    assert 1.4 < elapsed < 2.6, f"10 beats at 200ms took {elapsed:.2f}s"
    assert {b["state"] for b in beats} == {"connected"}
    assert beats[0]["node"] == "leaf-01" and beats[0]["labels"] == {}


def test_custom_prefix_domain_and_labels(daemons, notify, nats_server):
    with Client(nats_server.port) as client:
        client.subscribe("site1.leaves.>")
        start_leaf(daemons, notify, nats_server, subjects={"prefix": "site1.leaves"},
                   node={"id": "leaf-01", "domain": "factory", "labels": {"rack": "r7"}})
        beat = valid("heartbeat", client.next_msg(subject="site1.leaves.leaf-01.heartbeat").data)
        assert (beat["domain"], beat["labels"]) == ("factory", {"rack": "r7"})
        assert health(client, "site1.leaves.leaf-01.health")["node"] == "leaf-01"


def event(msg):
    body = valid("event", msg.data)
    assert msg.subject.endswith(".events." + body["event_type"])
    assert msg.headers["X-Message-ID"] == body["event_id"]
    assert msg.headers["X-Correlation-ID"] == body["correlation_id"]
    assert msg.headers["X-Causation-ID"] == body["causation_id"]
    return body


def test_lifecycle_events_in_the_cim_envelope(daemons, notify, nats_server):
    with Client(nats_server.port) as client:
        client.subscribe("cim.leaf.leaf-01.events.>")
        leaf = start_leaf(daemons, notify, nats_server)
        started, ready = (event(m) for m in client.messages(2))
        assert (started["event_type"], ready["event_type"]) == ("started", "ready")
        assert started["correlation_id"] == started["event_id"] == started["causation_id"]

        leaf.signal(signal.SIGHUP)
        reloading, reloaded = (event(m) for m in client.messages(2))
        assert (reloading["event_type"], reloaded["event_type"]) == ("reloading", "reloaded")
        assert reloaded["correlation_id"] == reloading["event_id"]
        assert reloaded["causation_id"] == reloading["event_id"]

        leaf.write_config("heartbeat: {interval: soon}\n")
        leaf.signal(signal.SIGHUP)
        _, failed = (event(m) for m in client.messages(2))
        assert failed["event_type"] == "reload_failed"
        assert "heartbeat.interval" in failed["data"]["errors"][0]

        leaf.signal(signal.SIGTERM)
        assert event(client.next_msg())["event_type"] == "stopping"
        assert leaf.wait(5) == 0


def test_health_on_the_node_and_fleet_subjects(daemons, notify, nats_server):
    start_leaf(daemons, notify, nats_server)
    with Client(nats_server.port) as client:
        mine = health(client)
        assert (mine["status"], mine["state"]) == ("ok", "connected")
        assert mine["checks"]["nats"]["server"] == nats_server.url
        assert health(client, "cim.leaf.health")["node"] == "leaf-01"


def test_every_leaf_answers_the_fan_out_request(daemons, notify, nats_server):
    for node in ("a", "b", "c"):
        start_leaf(daemons, notify, nats_server, node_id=node)
    with Client(nats_server.port) as client:
        replies = client.gather("cim.leaf.health", wait=2.0, expect=3)
    assert sorted(valid("health", r.data)["node"] for r in replies) == ["a", "b", "c"]


@pytest.mark.parametrize("payload", [b"", b"garbage \x00\xff", b"{\"json\": true}", b"x" * 1000_000],
                         ids=["empty", "garbage", "json", "1MB"])
def test_any_request_payload_gets_a_valid_answer(daemons, notify, nats_server, payload):
    start_leaf(daemons, notify, nats_server)
    with Client(nats_server.port) as client:
        assert health(client, data=payload)["status"] == "ok"


def test_srv_discovery_with_nats_js(daemons, notify, nats_server, js_client):
    for node in ("a", "b"):
        start_leaf(daemons, notify, nats_server, node_id=node)
    with Client(nats_server.port) as client:
        for _ in range(3):
            client.request("cim.leaf.a.health")
        ping = json.loads(client.request("$SRV.PING.cim-leaf.a").data)
        assert ping == {"type": "io.nats.micro.v1.ping_response", "name": "cim-leaf", "id": "a",
                        "version": "0.1.0", "metadata": {}}
        for subject in ("$SRV.INFO", "$SRV.INFO.cim-leaf", "$SRV.INFO.cim-leaf.b"):
            assert {json.loads(r.data)["id"] for r in client.gather(subject, wait=0.5)} >= {"b"}
    result = subprocess.run(["node", "tests/js/srv.mjs", "--server", nats_server.url, "--name", "cim-leaf"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert sorted(p["id"] for p in seen["ping"]) == ["a", "b"]
    stats_a = next(s for s in seen["stats"] if s["id"] == "a")
    assert stats_a["endpoints"][0]["num_requests"] == 3
    assert stats_a["endpoints"][0]["subject"] == "cim.leaf.a.health"


@pytest.fixture(scope="module")
def auth_fixtures(tmp_path_factory, js_client):
    """Every auth mode's secrets and matching server config (tests/js/auth.mjs)."""
    directory = tmp_path_factory.mktemp("auth")
    result = subprocess.run(["node", "tests/js/auth.mjs", str(directory)], cwd=ROOT, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def auth_settings(fixtures, mode):
    entry = fixtures[mode]
    return {"operator": {"credentials_file": entry.get("creds")},
            "nkey": {"nkey_seed_file": entry.get("seed_file")},
            "password": {"user": entry.get("user"), "password_file": entry.get("password_file")},
            "token": {"token_file": entry.get("token_file")}}[mode]


@pytest.mark.parametrize("mode", ["password", "token", "nkey", "operator"])
def test_each_auth_mode_connects(daemons, notify, tmp_path, auth_fixtures, mode):
    server = NatsServer(tmp_path, extra=open(auth_fixtures[mode]["conf"]).read()).start()
    try:
        leaf = start_leaf(daemons, notify, server, nats=auth_settings(auth_fixtures, mode))  # READY: connected
        secrets = [open(path).read().strip() for key, path in auth_fixtures[mode].items() if key.endswith("_file")]
        assert all(secret not in leaf.output() for secret in secrets)
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_wrong_secret_one_clear_line_then_recovers_after_reload(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra='authorization { token: "right" }').start()
    token = tmp_path / "token"
    token.write_text("wrong\n")
    try:
        leaf = daemons(leaf_config(server, nats={"token_file": str(token)}), notify=notify).start()
        notify.wait_for("STATUS", "Connecting to NATS (NATS refused the credentials: Authorization Violation)")
        time.sleep(1.5)  # several retries with backoff
        assert leaf.output().count("Authorization Violation") == 1
        assert "wrong" not in leaf.output()
        assert "READY" not in notify.keys()
        token.write_text("right\n")
        leaf.signal(signal.SIGHUP)
        notify.wait_for("READY", "1", timeout=10)
        assert leaf.stop() == 0
    finally:
        server.stop()


PASSWORD_SERVER = "authorization { user: leaf, password: 'Sup3r\"S3cret' }"


def test_password_nats_c_would_send_unescaped_is_refused_at_start(daemons, tmp_path):
    """nats.c 3.4.1 writes the password into CONNECT's JSON as it is: one with
    a '"' never connected ("Expected 'PONG', got ''"), and could add fields."""
    server = NatsServer(tmp_path, extra=PASSWORD_SERVER).start()
    password = tmp_path / "password"
    password.write_text('Sup3r"S3cret\n')
    try:
        leaf = daemons(leaf_config(server, nats={"user": "leaf", "password_file": str(password)})).start()
        assert leaf.wait(2) == 78
        assert (f"{leaf.config_path}:6:3: nats.password_file: {password} holds a '\"', which nats.c would send "
                "unescaped in CONNECT; use another secret (it is not shown)") in leaf.output()
        assert "Sup3r" not in leaf.output() and "S3cret" not in leaf.output()
    finally:
        server.stop()


def test_token_cannot_add_fields_to_connect(daemons, tmp_path):
    """The old binary got in with this token as user leaf: its '"' ended the
    token's string in CONNECT and the rest became "user" and "pass" fields."""
    server = NatsServer(tmp_path, extra=PASSWORD_SERVER.replace('Sup3r\"S3cret', "good")).start()
    token = tmp_path / "token"
    token.write_text('x","user":"leaf","pass":"good\n')
    try:
        leaf = daemons(leaf_config(server, nats={"token_file": str(token)})).start()
        assert leaf.wait(2) == 78
        assert f"nats.token_file: {token} holds a '\"'" in leaf.output()
        assert "connected to NATS" not in leaf.output() and "good" not in leaf.output()
    finally:
        server.stop()


def test_password_nats_c_would_send_unescaped_is_refused_on_reload(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra=PASSWORD_SERVER.replace('Sup3r\"S3cret', "good")).start()
    password = tmp_path / "password"
    password.write_text("good\n")
    try:
        with Client(server.port, user="leaf", **{"pass": "good"}) as client:
            client.subscribe("cim.leaf.leaf-01.>")
            leaf = start_leaf(daemons, notify, server, nats={"user": "leaf", "password_file": str(password)})
            password.write_text('Sup3r"S3cret\n')
            leaf.signal(signal.SIGHUP)
            failed = event(client.next_msg(subject="cim.leaf.leaf-01.events.reload_failed"))
            assert failed["data"]["errors"] == [
                f"{leaf.config_path}:6:3: nats.password_file: {password} holds a '\"', which nats.c would send "
                "unescaped in CONNECT; use another secret (it is not shown)"]
            # The previous configuration keeps running, and says the reload failed.
            status = health(client)
            assert (status["state"], status["status"]) == ("connected", "degraded")
            assert status["checks"]["config"]["last_reload_failed"] is True
        server.stop()
        server.start()  # the previous password gets the leaf in again
        with Client(server.port, user="leaf", **{"pass": "good"}) as client:
            client.subscribe("cim.leaf.leaf-01.heartbeat")
            client.next_msg(timeout=10)
        assert leaf.stop() == 0
        assert "Sup3r" not in leaf.output() and "S3cret" not in leaf.output()
    finally:
        server.stop()


def test_tls_with_client_certificate(daemons, notify, tmp_path):
    make_certificates(tmp_path)
    server = NatsServer(tmp_path, extra=f'tls {{ cert_file: "{tmp_path}/server.pem", key_file: "{tmp_path}/server.key", '
                                        f'ca_file: "{tmp_path}/ca.pem", verify: true }}').start()
    tls = {"ca_file": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "client.pem"),
           "key_file": str(tmp_path / "client.key")}
    try:
        leaf = start_leaf(daemons, notify, server, nats={"servers": [f"tls://127.0.0.1:{server.port}"], "tls": tls})
        assert leaf.stop() == 0
        # A CA that did not sign the server's certificate is refused, clearly.
        (tmp_path / "other").mkdir()
        make_certificates(tmp_path / "other")
        tls["ca_file"] = str(tmp_path / "other" / "ca.pem")
        leaf = daemons(leaf_config(server, nats={"servers": [f"tls://127.0.0.1:{server.port}"], "tls": tls}),
                       notify=notify).start()
        leaf.wait_for_log("cannot connect to NATS: .*(SSL|certificate|handshake)", timeout=10)
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_over_tls_requests_in_flight_are_answered_and_heartbeats_span_records(daemons, notify, tmp_path):
    """What the daemon reads and writes over TLS are records, not bytes: 64
    requests in flight must all be answered, and 40 kB heartbeats (three
    records each) arrive whole and in order."""
    server = tls_server(tmp_path)
    labels = {f"label{i:03}": "x" * 250 for i in range(160)}
    try:
        leaf = start_leaf(daemons, notify, server, nats={"servers": [f"tls://127.0.0.1:{server.port}"],
                                                         "tls": {"ca_file": str(tmp_path / "ca.pem")}},
                          node={"id": "leaf-01", "labels": labels})
        with Client(server.port, tls_ca=str(tmp_path / "ca.pem")) as client:
            client.subscribe("_INBOX.tls.*")
            for i in range(64):
                client.publish("cim.leaf.leaf-01.health", reply=f"_INBOX.tls.{i}")
            answered = {client.next_msg(timeout=5).subject for _ in range(64)}
            assert answered == {f"_INBOX.tls.{i}" for i in range(64)}
            client.subscribe("cim.leaf.leaf-01.heartbeat")
            beats = [valid("heartbeat", msg.data) for msg in client.messages(5, timeout=5)]
        assert [b["seq"] for b in beats] == list(range(beats[0]["seq"], beats[0]["seq"] + 5))
        assert all(b["labels"] == labels for b in beats)
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_reconnect_after_server_restart(daemons, notify, tmp_path):
    server = NatsServer(tmp_path).start()
    leaf = start_leaf(daemons, notify, server)
    with Client(server.port) as client:
        client.subscribe("cim.leaf.leaf-01.heartbeat")
        last_seq = valid("heartbeat", client.next_msg().data)["seq"]
    server.kill()
    notify.wait_for("STATUS", "Reconnecting to NATS (NATS connection lost)")
    leaf.signal(signal.SIGHUP)  # events raised during the outage
    leaf.wait_for_log("configuration reloaded")
    server.start()
    with Client(server.port) as client:
        client.subscribe("cim.leaf.leaf-01.>")
        wait_until(lambda: "reconnected to NATS" in leaf.output(), 10, what="reconnect")
        messages = [m for m in client.messages(6, timeout=5)]
        events = [event(m)["event_type"] for m in messages if ".events." in m.subject]
        # In the order they happened (their seq): the outage's events, then the reconnect.
        assert events[:3] == ["reloading", "reloaded", "nats_reconnected"]
        beats = [valid("heartbeat", m.data)["seq"] for m in messages if m.subject.endswith("heartbeat")]
        assert beats and beats[0] > last_seq and beats == list(range(beats[0], beats[0] + len(beats)))
        state = health(client)
        assert state["checks"]["nats"]["reconnects"] == 1 and state["status"] == "ok"
    assert leaf.stop() == 0
    server.stop()


def test_events_that_do_not_fit_the_spool_are_dropped_counted_and_reported(daemons, notify, tmp_path):
    server = NatsServer(tmp_path).start()
    # A slow reconnect: the test's subscriber is in place before the leaf is back.
    leaf = start_leaf(daemons, notify, server, events={"delivery": "core", "spool_bytes": 65536},
                      nats={"reconnect": {"wait": "2s", "jitter": "10ms"}})
    server.kill()
    leaf.wait_for_log("reconnecting")
    for _ in range(120):  # each reload raises two events of ~400 bytes
        leaf.signal(signal.SIGHUP)
        time.sleep(0.005)
    leaf.wait_for_log("events dropped .*: the spool is full")
    server.start()
    with Client(server.port) as client:
        client.subscribe("cim.leaf.leaf-01.events.>")
        events = []
        while True:  # until the leaf is back and quiet
            try:
                events.append(event(client.next_msg(timeout=4)))
            except TimeoutError:
                break
        state = health(client)
    # Every event from the third on is either delivered or inside an
    # events_dropped range; started and ready (1, 2) went out before the
    # kill, or on a loaded machine ready may come only now.
    accounted = set()
    for e in events:
        accounted.add(e["seq"])
        if e["event_type"] == "events_dropped":
            for first, last in e["data"]["ranges"]:
                accounted.update(range(first, last + 1))
    assert min(accounted) in (2, 3) and accounted == set(range(min(accounted), max(accounted) + 1))
    reports = [e["data"] for e in events if e["event_type"] == "events_dropped"]
    assert reports and sum(r["count"] for r in reports) == state["checks"]["events"]["dropped"]
    assert (state["status"], state["checks"]["events"]["status"]) == ("degraded", "degraded")
    assert "the spool is full" in state["checks"]["events"]["last_loss"]
    assert leaf.stop() == 0
    server.stop()


def test_cluster_failover(daemons, notify, tmp_path):
    ports = [free_port(), free_port()]
    routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in ports)
    servers = [NatsServer(tmp_path, name=f"n{i}", extra=f"cluster {{ name: c, listen: 127.0.0.1:{ports[i]}, "
                                                         f"routes: [{routes}] }}").start() for i in range(2)]
    try:
        leaf = start_leaf(daemons, notify, servers[0], nats={"servers": [s.url for s in servers]})
        with Client(servers[1].port) as client:
            used = health(client)["checks"]["nats"]["server"]
        victim, survivor = (servers if used == servers[0].url else servers[::-1])
        victim.kill()
        with Client(survivor.port) as client:
            client.subscribe("cim.leaf.leaf-01.heartbeat")
            wait_until(lambda: "reconnected to NATS" in leaf.output(), 15, what="failover")
            valid("heartbeat", client.next_msg(timeout=5).data)
            assert health(client)["checks"]["nats"]["server"] == survivor.url
        assert leaf.stop() == 0
    finally:
        for server in servers:
            server.stop()


def test_sigterm_while_reconnecting_exits_cleanly_and_promptly(daemons, notify, tmp_path):
    server = NatsServer(tmp_path).start()
    leaf = start_leaf(daemons, notify, server)
    server.kill()
    notify.wait_for("STATUS", "Reconnecting to NATS (NATS connection lost)")
    started = time.monotonic()
    leaf.signal(signal.SIGTERM)
    assert leaf.wait(6) == 0
    assert time.monotonic() - started < 5.5  # the stop bound
    assert "STOPPING" in notify.keys()

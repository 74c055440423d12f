"""What an adversarial review found on the NATS side, each tried again: TLS
given up for plain text, events and heartbeats over the server's
max_payload, subscriptions and publishes the server refuses, retries that
slowed down, SIGTERM held up by silent servers, and $SRV requests left
without an answer. Each test failed on the daemon before these fixes."""
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from faults import AcceptLog, Deaf, MidMessageCut, Partition, PlaintextServer, SilentServer
from harness import BIN, NatsServer, leaf_config, make_certificates, start_leaf, tls_server, wait_until
from nats_client import Client, NatsError
from payloads import health, valid

USERS = ('authorization {{ users: [ {{ user: leaf, password: pw, permissions: {leaf} }}, '
         '{{ user: watch, password: pw }} ] }}')
ALLOW_ALL = '{ publish: ">", subscribe: ">" }'


def status_matching(notify, pattern, timeout=10):
    """The first STATUS= that matches `pattern`."""
    def find():
        return next((f["STATUS"] for _, f, _ in notify.snapshot() if re.search(pattern, f.get("STATUS", ""))), None)
    return wait_until(find, timeout, what=f"STATUS matching /{pattern}/")


def password_auth(tmp_path, secret="pw"):
    (tmp_path / "password").write_text(secret + "\n")
    return {"user": "leaf", "password_file": str(tmp_path / "password")}


# 1. tls:// or any nats.tls file makes TLS mandatory.

@pytest.mark.parametrize("asked_by", ["tls-url", "tls-ca-file"])
def test_tls_is_never_given_up_for_plain_text(daemons, notify, tmp_path, asked_by):
    fake = PlaintextServer()
    make_certificates(tmp_path)
    nats = {**password_auth(tmp_path, "s3cret-pw"), "servers": [f"tls://127.0.0.1:{fake.port}"]}
    if asked_by == "tls-ca-file":
        nats.update(servers=[f"nats://127.0.0.1:{fake.port}"], tls={"ca_file": str(tmp_path / "ca.pem")})
    try:
        leaf = daemons(leaf_config(None, nats=nats), notify=notify).start()
        status_matching(notify, "the server does not offer TLS")
        wait_until(lambda: fake.connections >= 2, 5, what="a retry")  # and still no plain text
        assert b"CONNECT" not in fake.received and b"s3cret" not in fake.received
        assert "READY" not in notify.keys()
        assert leaf.stop() == 0
    finally:
        fake.close()


def test_tls_url_to_a_real_plain_text_server_is_an_error_not_a_downgrade(daemons, notify, nats_server):
    leaf = daemons(leaf_config(None, nats={"servers": [f"tls://127.0.0.1:{nats_server.port}"]}),
                   notify=notify).start()
    status_matching(notify, "the server does not offer TLS")
    time.sleep(0.5)
    assert "READY" not in notify.keys()
    with Client(nats_server.port) as client:  # nobody answers for the leaf
        with pytest.raises(Exception):
            client.request("cim.leaf.leaf-01.health", timeout=0.5)
    assert leaf.stop() == 0


def test_a_server_list_mixing_nats_and_tls_is_refused(tmp_path):
    config = tmp_path / "mixed.yaml"
    config.write_text("nats:\n  servers: [tls://a.example:4222, nats://b.example:4222]\n")
    result = subprocess.run([str(BIN), "--check-config", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 78
    assert "mixed.yaml:2:3: nats.servers: mixes nats:// and tls:// servers" in result.stderr


# 4. An event over max_payload is cut to fit; nothing holds up the queue.

def event(msg):
    body = valid("event", msg.data)
    assert msg.headers["X-Message-ID"] == body["event_id"]
    return body


def test_an_event_over_max_payload_is_cut_to_fit_and_holds_up_nothing(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra="max_payload: 2048").start()
    try:
        with Client(server.port) as client:
            client.subscribe("cim.leaf.leaf-01.events.>")
            leaf = start_leaf(daemons, notify, server)
            client.messages(2)  # started, ready
            # A reload rejected with 60 errors: a reload_failed event of ~7 kB.
            leaf.write_config("".join(f"unknown_key_number_{i}: {i}\n" for i in range(60)))
            leaf.signal(signal.SIGHUP)
            reloading, failed = client.messages(2)
            assert event(reloading)["event_type"] == "reloading"
            body = event(failed)
            assert body["event_type"] == "reload_failed" and body["data"]["truncated"] is True
            assert body["correlation_id"] == event(reloading)["event_id"]
            assert len(failed.data) + len(failed.raw_headers) <= 2048
            assert "unknown_key_number_0" in body["data"]["errors"][0]
            # What comes after goes through.
            leaf.write_config(leaf_config(server))
            leaf.signal(signal.SIGHUP)
            assert [event(m)["event_type"] for m in client.messages(2)] == ["reloading", "reloaded"]
            state = health(client)
        assert state["checks"]["events"]["truncated"] == 1
        assert state["checks"]["events"]["dropped"] == 0
        assert "cut from" in leaf.output()
        assert leaf.stop() == 0
    finally:
        server.stop()


# 5. A heartbeat over max_payload is refused visibly.

def test_heartbeats_over_max_payload_are_refused_counted_and_degrade_health(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra="max_payload: 2048").start()
    labels = {f"label{i:02}": "x" * 200 for i in range(20)}  # a heartbeat of ~4.5 kB
    try:
        leaf = start_leaf(daemons, notify, server, node={"id": "leaf-01", "labels": labels})
        with Client(server.port) as client:
            wait_until(lambda: health(client)["checks"]["nats"]["heartbeats_refused"] >= 3, 5,
                       what="refused heartbeats")
            state = health(client)
        nats = state["checks"]["nats"]
        assert state["heartbeats_sent"] == 0
        assert (state["status"], nats["status"]) == ("degraded", "degraded")
        assert "over the server's max_payload of 2048" in nats["last_loss"]
        assert "fewer or shorter node.labels" in nats["last_loss"]
        until = datetime.fromisoformat(nats["degraded_until"].replace("Z", "+00:00"))
        assert timedelta(minutes=4) < until - datetime.now(timezone.utc) <= timedelta(minutes=5)
        assert leaf.output().count("heartbeat not sent") == 1  # a warning once, not every beat
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_check_config_refuses_labels_whose_heartbeat_no_default_server_takes(tmp_path):
    # 700 labels of 255 control characters: each is 6 bytes in JSON (\u0001).
    value = '"' + "\\x01" * 255 + '"'
    lines = ["node:", "  id: leaf-01", "  labels:"] + [f"    l{i}: {value}" for i in range(700)]
    config = tmp_path / "labels.yaml"
    config.write_text("\n".join(lines) + "\n")
    result = subprocess.run([str(BIN), "--check-config", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 78, result.stderr
    assert re.search(r"labels\.yaml:3:3: node\.labels: make the heartbeat \d+ bytes, more than NATS's default "
                     r"max_payload of 1048576", result.stderr)


# 6. Retries keep the pace of reconnect.wait plus jitter.

def test_connect_retries_keep_the_configured_pace(daemons, notify):
    log = AcceptLog()  # cuts every connection at once
    try:
        leaf = daemons(leaf_config(None, nats={"servers": [log.url], "reconnect": {"wait": "250ms", "jitter": "50ms"}}),
                       notify=notify).start()
        wait_until(lambda: len(log.times) >= 8, 10, what="eight attempts")
        gaps = log.gaps()[:7]
        assert all(0.2 < gap < 0.5 for gap in gaps), gaps
        assert leaf.stop() == 0
    finally:
        log.close()


def test_retries_after_refused_credentials_keep_the_configured_pace(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra='authorization { token: "right" }').start()
    log = AcceptLog(server)
    (tmp_path / "token").write_text("wrong\n")
    try:
        leaf = daemons(leaf_config(None, nats={"servers": [log.url], "token_file": str(tmp_path / "token"),
                                               "reconnect": {"wait": "250ms", "jitter": "50ms"}}),
                       notify=notify).start()
        wait_until(lambda: len(log.times) >= 7, 10, what="seven attempts")
        gaps = log.gaps()[:6]
        assert all(0.2 < gap < 0.6 for gap in gaps), gaps
        assert leaf.output().count("Authorization Violation") == 1  # said once
        assert leaf.stop() == 0
    finally:
        log.close()
        server.stop()


# 7. Refused subscriptions keep the daemon from READY; refused publishes count.

def test_a_refused_subscription_keeps_the_daemon_from_ready_until_allowed(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra=USERS.format(leaf='{ subscribe: { deny: ["cim.leaf.health"] } }')).start()
    try:
        leaf = daemons(leaf_config(server, nats=password_auth(tmp_path)), notify=notify).start()
        status_matching(notify, 'NATS refused a subscription: Permissions Violation for Subscription to '
                                '"?cim.leaf.health')
        time.sleep(0.5)  # retried, never ready
        assert "READY" not in notify.keys()
        server.reconfigure(USERS.format(leaf=ALLOW_ALL))
        notify.wait_for("READY", "1", timeout=10)
        with Client(server.port, user="watch", **{"pass": "pw"}) as client:
            assert health(client, "cim.leaf.health")["status"] == "ok"
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_refused_heartbeats_are_counted_as_refused_not_sent(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra=USERS.format(leaf='{ publish: { deny: ["cim.leaf.*.heartbeat"] } }')).start()
    try:
        leaf = start_leaf(daemons, notify, server, nats=password_auth(tmp_path))
        with Client(server.port, user="watch", **{"pass": "pw"}) as client:
            wait_until(lambda: health(client)["checks"]["nats"]["heartbeats_refused"] >= 3, 5,
                       what="refused heartbeats")
            state = health(client)
        assert state["heartbeats_sent"] == 0
        assert state["status"] == "degraded"
        assert "Permissions Violation for Publish" in state["checks"]["nats"]["last_loss"]
        assert leaf.stop() == 0
    finally:
        server.stop()


# 9. SIGTERM exits within 3 s, whatever the servers do.

def sigterm_takes(leaf):
    began = time.monotonic()
    leaf.signal(signal.SIGTERM)
    assert leaf.wait(10) == 0
    return time.monotonic() - began


@pytest.mark.parametrize("count", [3, 6])
def test_sigterm_within_3s_while_connecting_to_silent_servers(daemons, notify, count):
    silent = [SilentServer() for _ in range(count)]
    try:
        leaf = daemons(leaf_config(None, nats={"servers": [s.url for s in silent]}), notify=notify).start()
        time.sleep(1)  # in the middle of the connect attempts
        assert sigterm_takes(leaf) < 3.0
        assert "STOPPING" in notify.keys()
    finally:
        for server in silent:
            server.close()


def test_sigterm_within_3s_during_a_reload_to_silent_servers(daemons, notify, nats_server):
    silent = [SilentServer() for _ in range(3)]
    try:
        leaf = start_leaf(daemons, notify, nats_server)
        leaf.write_config(leaf_config(None, nats={"servers": [s.url for s in silent]}))
        leaf.signal(signal.SIGHUP)
        leaf.wait_for_log("configuration reloaded")
        time.sleep(0.5)
        assert sigterm_takes(leaf) < 3.0
    finally:
        for server in silent:
            server.close()


def test_sigterm_within_3s_when_the_network_swallows_everything(daemons, notify, nats_server):
    partition = Partition(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [partition.url]})
        partition.cut()  # the drain's PING never gets its PONG
        assert sigterm_takes(leaf) < 3.0
    finally:
        partition.close()


@pytest.mark.slow_partition
def test_a_link_that_swallows_everything_is_noticed_within_30s_and_healed(daemons, notify, nats_server):
    """No reset, no error: only the client's PINGs going unanswered tell.
    One every 15 s, and the second one unanswered ends the link, so 30 s at
    the most (as with 10 s and two, but with a third fewer wake-ups)."""
    partition = Partition(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [partition.url]})
        after = len(notify.snapshot())
        partition.cut()
        cut_at = time.monotonic()
        # Other news may come first: a JetStream question cut off unanswered.
        notify.wait_for("STATUS", lambda status: status.startswith("Reconnecting to NATS (NATS connection lost"),
                        timeout=35, after=after)
        noticed = time.monotonic() - cut_at
        assert noticed < 31, noticed
        after = len(notify.snapshot())
        partition.heal()
        notify.wait_for("STATUS", lambda status: status.startswith("Connected to"), timeout=10, after=after)
        assert leaf.stop() == 0
    finally:
        partition.close()


def flood_with_health_requests(server, count=20000, **client_options):
    """18 MB of replies for leaf-01 to send: far more than sockets hold."""
    with Client(server.port, **client_options) as client:
        for _ in range(count):
            client.publish("cim.leaf.leaf-01.health", reply="nobody.listens")
        client.flush()


def wait_for_health_reply(server, **client_options):
    """Until leaf-01 answers on `server` again, once it has reconnected."""
    def answered():
        try:
            with Client(server.port, **client_options) as client:
                return health(client)["node"] == "leaf-01"
        except (TimeoutError, NatsError):  # the flood's stale requests may still be in the way
            return False
    wait_until(answered, timeout=20, what="a health reply after the reconnect")


def test_sigterm_within_3s_while_the_server_stops_reading(daemons, notify, nats_server):
    """The replies wait to be written until the write deadline gives the
    socket up; the stopping event and the drain come after them."""
    deaf = Deaf(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [deaf.url]})
        deaf.deafen()
        flood_with_health_requests(nats_server)
        assert sigterm_takes(leaf) < 3.0
    finally:
        deaf.close()


def test_a_server_that_stops_reading_fails_the_write_within_the_deadline_and_the_link_heals(
        daemons, notify, nats_server):
    """A server that stops reading (its window shut, no reset) would keep
    every write waiting for ever. The write deadline (1 s) ends it: the
    daemon notices long before a PING could tell, reconnects and answers."""
    deaf = Deaf(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [deaf.url]})
        after = len(notify.snapshot())
        deaf.deafen()
        flood_with_health_requests(nats_server)
        flooded = time.monotonic()
        lost, _ = notify.wait_for("STATUS", lambda status: status.startswith("Reconnecting to NATS (NATS connection lost"),
                                  timeout=15, after=after)
        noticed = time.monotonic() - flooded
        assert noticed < 5, noticed  # the deadline, not the PINGs (15 s apart)
        notify.wait_for("STATUS", lambda status: status.startswith("Connected to"), timeout=10, after=lost + 1)
        wait_for_health_reply(nats_server)
        assert leaf.stop() == 0
    finally:
        deaf.close()


def test_a_server_that_stops_reading_is_noticed_when_only_the_daemon_writes(daemons, notify, nats_server):
    """No request wakes the socket's reader here: the event loop writes the
    heartbeats (200 kB each, ten a second, each taken whole by the socket
    until it is full) itself. The write deadline must still end the link
    within seconds, not the PINGs in half a minute."""
    labels = {f"label{i:03}": "x" * 250 for i in range(800)}
    deaf = Deaf(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [deaf.url]},
                          node={"id": "leaf-01", "labels": labels}, heartbeat={"interval": "100ms"})
        time.sleep(1)  # the start's last answers are in: nothing comes to read once deaf
        after = len(notify.snapshot())
        deaf.deafen()
        deafened = time.monotonic()
        notify.wait_for("STATUS", lambda status: status.startswith("Reconnecting to NATS (NATS connection lost"),
                        timeout=20, after=after)
        assert time.monotonic() - deafened < 6
        assert leaf.stop() == 0
    finally:
        deaf.close()


def test_over_tls_a_server_that_stops_reading_is_noticed_and_the_link_heals(daemons, notify, tmp_path):
    """The same over TLS, where OpenSSL's write that finds the socket full
    goes to nats.c's own wait: the link must be given up within seconds,
    heal (the socket loop, while nats.c still reconnected it, lost a link
    here in the middle of a message and then every later one: nats.c
    #1007), and stop within 3 s."""
    server = tls_server(tmp_path)
    ca = str(tmp_path / "ca.pem")
    deaf = Deaf(server)
    try:
        leaf = start_leaf(daemons, notify, server, nats={"servers": [f"tls://127.0.0.1:{deaf.port}"],
                                                         "tls": {"ca_file": ca}})
        after = len(notify.snapshot())
        deaf.deafen()
        flood_with_health_requests(server, tls_ca=ca)
        flooded = time.monotonic()
        notify.wait_for("STATUS", lambda status: status.startswith("Reconnecting to NATS (NATS connection lost"),
                        timeout=15, after=after)
        assert time.monotonic() - flooded < 5
        wait_for_health_reply(server, tls_ca=ca)
        assert sigterm_takes(leaf) < 3.0
    finally:
        deaf.close()
        server.stop()


def test_a_link_cut_in_the_middle_of_a_message_heals(daemons, notify, nats_server):
    """nats.c keeps its protocol parser from one of its own reconnects to the
    next when the caller reads the socket (nats.c #1007): a link cut in the
    middle of a message made every later connection fail on its first read,
    for ever. The next connection must start afresh, answer, and stay."""
    cut = MidMessageCut(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [cut.url]})
        after = len(notify.snapshot())
        cut.cut_next_message()
        with Client(nats_server.port) as client:
            client.publish("cim.leaf.leaf-01.health", reply="_INBOX.cut")
            client.flush()
        notify.wait_for("STATUS", lambda status: status.startswith("Reconnecting to NATS (NATS connection lost"),
                        timeout=5, after=after)
        notify.wait_for("STATUS", lambda status: status.startswith("Connected to"), timeout=5, after=after)
        time.sleep(1)  # a stale parser fails the new connection at its first read
        with Client(nats_server.port) as client:
            assert health(client)["checks"]["nats"]["status"] == "ok"
        assert leaf.output().count("NATS connection lost") == 1
        assert "reconnected to NATS" in leaf.output()
        assert leaf.stop() == 0
    finally:
        cut.close()


def test_replies_a_server_does_not_take_stop_piling_up_and_are_counted_as_errors(daemons, notify, nats_server):
    """18 MB of replies for a server that reads none: past 4 MiB waiting to
    be written, requests go unanswered (the server is given up within the
    write deadline anyway) and each is counted as an error, not kept."""
    deaf = Deaf(nats_server)
    try:
        leaf = start_leaf(daemons, notify, nats_server, nats={"servers": [deaf.url]})
        after = len(notify.snapshot())
        before_kib = vm_kib(leaf.proc.pid, "VmRSS")
        deaf.deafen()
        flood_with_health_requests(nats_server)
        notify.wait_for("STATUS", lambda status: status.startswith("Connected to"), timeout=20, after=after)
        grown_mib = (vm_kib(leaf.proc.pid, "VmHWM") - before_kib) / 1024
        if "ASAN_OPTIONS" not in os.environ:  # ASan keeps freed memory in quarantine
            assert grown_mib < 12, grown_mib  # 15 MiB when every reply is queued
        with Client(nats_server.port) as client:
            stats = json.loads(client.request("$SRV.STATS.cim-leaf.leaf-01", timeout=5).data)
        own = next(e for e in stats["endpoints"] if e["name"] == "health")
        assert own["num_errors"] > 0, own
        assert own["last_error"].startswith("reply not sent: the server has not taken the last "), own
        assert leaf.stop() == 0
    finally:
        deaf.close()


def vm_kib(pid, field):
    line = next(l for l in open(f"/proc/{pid}/status") if l.startswith(field + ":"))
    return int(line.split()[1])


# 10. $SRV answers every request; only requests count.

def test_an_unknown_srv_verb_gets_a_service_error(daemons, notify, nats_server):
    start_leaf(daemons, notify, nats_server)
    with Client(nats_server.port) as client:
        reply = client.request("$SRV.FROB.cim-leaf.leaf-01")
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    assert 'unknown verb "FROB"' in reply.headers["Nats-Service-Error"]


def test_messages_without_a_reply_subject_are_not_counted_as_requests(daemons, notify, nats_server):
    start_leaf(daemons, notify, nats_server)
    with Client(nats_server.port) as client:
        for _ in range(3):
            client.publish("cim.leaf.health", b"")
        client.request("cim.leaf.health")
        stats = json.loads(client.request("$SRV.STATS.cim-leaf.leaf-01").data)
    fleet = next(e for e in stats["endpoints"] if e["name"] == "fleet-health")
    assert fleet["num_requests"] == 1

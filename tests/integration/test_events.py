"""Events that are never lost: acknowledged by a real JetStream stream
(nats-server -js on loopback), spooled on disk until then, re-sent after
partitions, restarts of either side and SIGKILL. The stream is read back
with nats.js (tests/js/stream.mjs), an independent client, and every event
is checked against proto/nats/event.schema.json."""
import json
import signal
import subprocess
import time

import pytest

from faults import Partition, SlowSpoolDisk
from harness import BIN, ROOT, NatsServer, leaf_config, start_ready, wait_until
from nats_client import Client, NatsError
from payloads import health, valid

STREAM = "CIM_LEAF_EVENTS"


def jetstream_server(tmp_path, name="nats", extra=""):
    return NatsServer(tmp_path, name=name, extra=f'jetstream {{ store_dir: "{tmp_path}/js-{name}" }}\n{extra}')


@pytest.fixture(autouse=True)
def _nats_js(js_client):
    """stream.mjs needs nats.js."""


def stream_events(server, stream=STREAM, domain=None):
    """Every event in the stream, in stream order, read by nats.js."""
    command = ["node", str(ROOT / "tests/js/stream.mjs"), "--server", server.url, "--stream", stream]
    if domain:
        command += ["--domain", domain]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    events = []
    for message in json.loads(result.stdout):
        event = valid("event", json.dumps(message["data"]).encode())
        assert message["headers"]["Nats-Msg-Id"] == event["event_id"]
        assert message["subject"].endswith(".events." + event["event_type"])
        events.append(event)
    return events


def assert_complete(events, first=1):
    """Exactly once each (by event_id), in seq order, no gap from `first` on."""
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event is in the stream twice"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(seqs))), seqs


def start_leaf(daemons, notify, server_url, name=None, env=None, state_directory=None, **sections):
    """A leaf on `server_url`, once READY; `name` again is a restart (the same spool)."""
    config = leaf_config(None, **sections)
    config["nats"]["servers"] = [server_url]
    return start_ready(daemons, notify, config, env=env, state_directory=state_directory,
                       **({"name": name} if name else {}))


def wait_acknowledged(server, pending=0, timeout=15):
    def done():
        try:
            with Client(server.port) as client:
                events = health(client)["checks"]["events"]
        except (NatsError, TimeoutError, OSError):
            return False  # the leaf is not back yet
        return events["delivery"] == "jetstream" and events["pending"] == pending
    wait_until(done, timeout, interval=0.1, what=f"{pending} events pending")


def reloads(leaf, count, pause=0.05):
    """`count` reloads, each signalled once the one before is done: SIGHUPs
    that arrive while one is pending merge into one, as POSIX signals do, and
    a slow (ASan, busy) daemon would otherwise do fewer than were counted."""
    done = leaf.output().count("configuration reloaded")
    for target in range(done + 1, done + count + 1):
        leaf.signal(signal.SIGHUP)
        wait_until(lambda: leaf.output().count("configuration reloaded") >= target, 10, what=f"reload {target}")
        time.sleep(pause)


def test_events_are_acknowledged_by_the_stream_the_daemon_creates(daemons, notify, tmp_path):
    server = jetstream_server(tmp_path).start()
    try:
        leaf = start_leaf(daemons, notify, server.url)
        reloads(leaf, 2)
        wait_acknowledged(server)
        with Client(server.port) as client:
            events_check = health(client)["checks"]["events"]
        assert (events_check["stream"], events_check["durable"], events_check["status"]) == (STREAM, True, "ok")
        assert events_check["acknowledged"] == 6
        events = stream_events(server)
        assert [e["event_type"] for e in events] == ["started", "ready"] + ["reloading", "reloaded"] * 2
        assert_complete(events)
        assert leaf.stop() == 0
        assert stream_events(server)[-1]["event_type"] == "stopping"  # acknowledged before the exit
    finally:
        server.stop()


def test_a_slow_disk_holds_back_neither_the_start_nor_the_loop_and_loses_nothing(daemons, notify, tmp_path):
    """Each fdatasync of the spool takes 2 s: READY=1, health replies and
    reloads do not wait for it; events go out once on disk, in order, many
    to one sync; the exit waits for `stopping` to reach the disk."""
    disk = SlowSpoolDisk(tmp_path, BIN, 2000)
    server = jetstream_server(tmp_path).start()
    try:
        leaf = start_leaf(daemons, notify, server.url, env=disk.env)
        assert disk.syncs() == 0  # READY=1 came while `started` was still on its way to the disk
        slowest = 0.0
        with Client(server.port) as client:
            for _ in range(10):
                reloads(leaf, 1, pause=0)
                began = time.monotonic()
                health(client)
                slowest = max(slowest, time.monotonic() - began)
        assert slowest < 1.0, f"a health reply took {slowest:.2f} s while the spool synced"
        wait_acknowledged(server, timeout=60)
        events = stream_events(server)
        assert [e["event_type"] for e in events] == ["started", "ready"] + ["reloading", "reloaded"] * 10
        assert_complete(events)
        assert 1 <= disk.syncs() <= 11, f"{disk.syncs()} fdatasyncs for 22 events"
        # `stopping` outlasts the stop's wait for acknowledgements, but not the exit.
        assert leaf.stop() == 0
        assert "1 event not acknowledged" in leaf.output()
        again = start_leaf(daemons, notify, server.url, name="leaf0")
        wait_acknowledged(server)
        events = stream_events(server)
        assert [e["event_type"] for e in events[-3:]] == ["stopping", "started", "ready"]
        assert_complete(events)
        assert again.stop() == 0
    finally:
        server.stop()


def test_a_hung_disk_is_named_in_health_and_the_journal_and_loses_nothing(daemons, notify, tmp_path):
    """The spool's fdatasync does not return until the test lets it: the
    daemon goes on answering; once the oldest event has waited 30 s, health
    is degraded and says the disk is why, and the journal says it once; when
    the disk returns, the events go out and health is ok again. A stop the
    disk holds up says so, and ends when the disk returns."""
    disk = SlowSpoolDisk(tmp_path, BIN, held=True)
    server = jetstream_server(tmp_path).start()

    def events_check():
        with Client(server.port) as client:
            return health(client)["checks"]["events"]

    try:
        leaf = start_leaf(daemons, notify, server.url, env=disk.env)
        check = events_check()  # waiting for the disk is no trouble yet
        assert (check["status"], check["problem"], check["pending"]) == ("ok", "", 2)
        wait_until(lambda: events_check()["problem"] != "", 40, interval=0.5, what="the disk named as the problem")
        check = events_check()
        assert check["status"] == "degraded" and check["pending"] == 2 and check["oldest_pending_s"] >= 30
        assert check["problem"] == "the oldest event is not on disk yet: the spool's fdatasync has not returned"
        assert disk.syncs() == 0
        assert leaf.output().count("events wait for the disk") == 1

        disk.release()
        wait_acknowledged(server)
        leaf.wait_for_log("events no longer wait for the disk")
        check = events_check()
        assert (check["status"], check["problem"]) == ("ok", "")
        assert [e["event_type"] for e in stream_events(server)] == ["started", "ready"]

        disk.hold()
        leaf.signal(signal.SIGTERM)  # `stopping` cannot reach the disk
        leaf.wait_for_log("the exit waits for the disk")
        assert leaf.proc.poll() is None
        disk.release()
        assert leaf.wait() == 0
        again = start_leaf(daemons, notify, server.url, name="leaf0")
        wait_acknowledged(server)
        events = stream_events(server)
        assert [e["event_type"] for e in events] == ["started", "ready", "stopping", "started", "ready"]
        assert_complete(events)
        assert again.stop() == 0
    finally:
        disk.release()
        server.stop()


def test_a_partition_without_reset_loses_nothing(daemons, notify, tmp_path):
    """A proxy that stops forwarding (no RST): nats.c sees nothing for ~30 s;
    what was sent in the meantime is re-sent until the stream has it."""
    server = jetstream_server(tmp_path).start()
    partition = Partition(server)
    try:
        leaf = start_leaf(daemons, notify, partition.url)
        wait_acknowledged(server)
        partition.cut()
        reloads(leaf, 4)  # 8 events into the void
        time.sleep(1)
        partition.heal()
        wait_acknowledged(server, timeout=20)
        events = stream_events(server)
        assert [e["event_type"] for e in events] == ["started", "ready"] + ["reloading", "reloaded"] * 4
        assert_complete(events)
        assert leaf.stop() == 0
    finally:
        partition.close()
        server.stop()


def test_sigkill_while_the_server_is_down_loses_nothing(daemons, notify, tmp_path):
    server = jetstream_server(tmp_path).start()
    try:
        leaf = start_leaf(daemons, notify, server.url)
        wait_acknowledged(server)
        server.stop()
        leaf.wait_for_log("reconnecting")
        reloads(leaf, 3)
        time.sleep(0.2)
        leaf.proc.kill()  # no stop, no drain: only the spool has them
        leaf.wait()
        server.start()
        again = start_leaf(daemons, notify, server.url, name="leaf0")  # same state directory
        assert "events from the last run to send" in again.output()
        wait_acknowledged(server)
        events = stream_events(server)
        assert [e["event_type"] for e in events] == (["started", "ready"] + ["reloading", "reloaded"] * 3 +
                                                      ["started", "ready"])
        assert_complete(events)
        assert again.stop() == 0
    finally:
        server.stop()


def test_a_server_restart_under_load_loses_nothing(daemons, notify, tmp_path):
    server = jetstream_server(tmp_path).start()
    try:
        leaf = start_leaf(daemons, notify, server.url)
        for round in range(3):
            reloads(leaf, 10, pause=0.02)
            server.kill()  # its store is on disk
            reloads(leaf, 10, pause=0.02)
            server.start()
        reloads(leaf, 5, pause=0.02)
        wait_acknowledged(server, timeout=30)
        events = stream_events(server)
        assert sum(e["event_type"] == "reloaded" for e in events) == 65
        assert_complete(events)
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_a_full_spool_is_reported_in_the_stream(daemons, notify, tmp_path):
    server = jetstream_server(tmp_path).start()
    try:
        leaf = start_leaf(daemons, notify, server.url, events={"spool_bytes": 65536})
        wait_acknowledged(server)
        server.stop()
        leaf.wait_for_log("reconnecting")
        reloads(leaf, 120, pause=0.005)
        leaf.wait_for_log("the spool is full")
        server.start()
        wait_acknowledged(server, timeout=30)
        events = stream_events(server)
        accounted = set()
        for e in events:
            accounted.add(e["seq"])
            if e["event_type"] == "events_dropped":
                for first, last in e["data"]["ranges"]:
                    accounted.update(range(first, last + 1))
        assert accounted == set(range(1, max(accounted) + 1)), "a gap nobody reported"
        with Client(server.port) as client:
            state = health(client)
        dropped = sum(e["data"]["count"] for e in events if e["event_type"] == "events_dropped")
        assert dropped == state["checks"]["events"]["dropped"] > 0
        assert state["checks"]["events"]["status"] == "degraded"  # for a while after the loss
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_a_full_disk_under_the_spool_loses_nothing_and_says_so_until_there_is_room(daemons, notify, tmp_path):
    """The spool's file system fills up: events go out without waiting for
    the disk, health says `durable: false` and why, the journal says it; once
    there is room the spool is written anew and durable again."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(state)], check=True)
    server = jetstream_server(tmp_path).start()
    filler = state / "filler"
    try:
        leaf = start_leaf(daemons, notify, server.url, state_directory=state)
        wait_acknowledged(server)
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass  # ENOSPC: the disk is full
        reloads(leaf, 10)  # past the room left in the spool's last page
        wait_acknowledged(server)
        with Client(server.port) as client:
            events_check = health(client)["checks"]["events"]
        assert (events_check["durable"], events_check["status"]) == (False, "degraded")
        assert "No space left on device" in events_check["problem"]
        assert "events are sent without waiting for the disk" in leaf.output()

        filler.unlink()
        reloads(leaf, 1)
        leaf.wait_for_log("is durable again")
        wait_acknowledged(server)
        with Client(server.port) as client:
            events_check = health(client)["checks"]["events"]
        assert (events_check["durable"], events_check["problem"]) == (True, "")
        events = stream_events(server)
        assert [e["event_type"] for e in events] == ["started", "ready"] + ["reloading", "reloaded"] * 11
        assert_complete(events)
        assert leaf.stop() == 0
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_a_truncated_spool_is_recovered_and_reported(daemons, notify, tmp_path):
    server = jetstream_server(tmp_path).start()
    try:
        server.stop()
        leaf = daemons(leaf_config(server), notify=notify).start()  # never connects: events stay spooled
        leaf.wait_for_log("starting")
        reloads(leaf, 3)
        time.sleep(0.2)
        assert leaf.stop() == 0
        spool = leaf.state_directory / "events.spool"
        size = spool.stat().st_size
        with open(spool, "r+b") as f:
            f.truncate(size - 100)  # power lost in the middle of the last record
        server.start()
        again = start_leaf(daemons, notify, server.url, name="leaf0")
        again.wait_for_log(r"event spool .*: kept \d+ events; cut \d+ bytes at offset \d+")
        wait_acknowledged(server)
        events = stream_events(server)
        assert [e["event_type"] for e in events][:2] == ["started", "reloading"]
        assert_complete(events)  # what was cut is the last one: no gap before it
        assert again.stop() == 0
    finally:
        server.stop()


def test_a_stream_that_does_not_capture_the_events_is_an_error_not_a_fall_back(daemons, notify, tmp_path):
    server = jetstream_server(tmp_path).start()
    try:
        with Client(server.port) as client:
            reply = client.request(f"$JS.API.STREAM.CREATE.{STREAM}",
                                   json.dumps({"name": STREAM, "subjects": ["elsewhere.>"]}).encode())
            assert "error" not in json.loads(reply.data)
        leaf = start_leaf(daemons, notify, server.url)
        leaf.wait_for_log(f"events are not delivered: stream {STREAM} does not capture cim.leaf.leaf-01.events.>")
        with Client(server.port) as client:
            state = health(client)
        events_check = state["checks"]["events"]
        assert events_check["delivery"] == "waiting" and events_check["pending"] == 2
        assert "does not capture" in events_check["problem"]
        assert state["status"] == "degraded"
        assert leaf.stop() == 0
    finally:
        server.stop()


def test_delivery_jetstream_on_a_server_without_it_waits_and_says_so(daemons, notify, nats_server):
    leaf = start_leaf(daemons, notify, nats_server.url, events={"delivery": "jetstream"})
    leaf.wait_for_log("events are not delivered: JetStream is not available")
    with Client(nats_server.port) as client:
        events_check = health(client)["checks"]["events"]
    assert events_check["pending"] == 2 and events_check["status"] == "degraded"
    assert leaf.stop() == 0


@pytest.mark.parametrize("delivery", ["auto", "core"])
def test_core_delivery_is_plain_publishes_and_not_durable(daemons, notify, nats_server, delivery):
    with Client(nats_server.port) as client:
        client.subscribe("cim.leaf.leaf-01.events.>")
        start_leaf(daemons, notify, nats_server.url, events={"delivery": delivery})
        events = [valid("event", m.data) for m in client.messages(2)]
        assert [e["seq"] for e in events] == [1, 2]
        events_check = health(client)["checks"]["events"]
    assert (events_check["delivery"], events_check["durable"], events_check["status"]) == ("core", False, "ok")


def test_a_stream_in_another_jetstream_domain(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra=f'jetstream {{ store_dir: "{tmp_path}/js", domain: leafdomain }}').start()
    try:
        leaf = start_leaf(daemons, notify, server.url, events={"stream": {"domain": "leafdomain"}})
        wait_acknowledged(server)
        assert_complete(stream_events(server, domain="leafdomain"))
        assert leaf.stop() == 0
    finally:
        server.stop()

"""The daemon against NATS servers that misbehave: silent ones that hang a
connect, one that confirms the subscriptions late, and reloads that move
the daemon to other servers while it waits or reconnects. Under the ASan
run these also catch nats.c calling into a link that is gone."""
import re
import signal
import time

from faults import LateFlushProxy, SilentServer
from harness import NatsServer, leaf_config, wait_until
from nats_client import Client
from payloads import valid


def reload_to(leaf, notify, config):
    """SIGHUP with `config`; the seconds from RELOADING=1 to READY=1."""
    leaf.write_config(config)
    after = len(notify.snapshot())
    leaf.signal(signal.SIGHUP)
    reloading, _ = notify.wait_for("RELOADING", "1", after=after)
    ready, _ = notify.wait_for("READY", "1", after=reloading + 1)
    messages = notify.snapshot()
    return messages[ready][0] - messages[reloading][0]


def watchdog_gaps(notify, after):
    pings = [t for t, fields, _ in notify.snapshot()[after:] if fields.get("WATCHDOG") == "1"]
    return [b - a for a, b in zip(pings, pings[1:])]


def test_reloads_between_silent_and_live_servers_never_stall_the_loop(daemons, notify, nats_server):
    silent = [SilentServer() for _ in range(3)]
    try:
        leaf = daemons(leaf_config(nats_server), notify=notify, env={"WATCHDOG_USEC": "1000000"}).start()
        notify.wait_for("READY", "1", timeout=10)
        start = len(notify.snapshot())
        # Each reload replaces the link; a link to the silent servers is stuck
        # in nats.c's connect (2 s a server) when the next reload drops it.
        for servers in ([s.url for s in silent], [nats_server.url]) * 2:
            took = reload_to(leaf, notify, leaf_config(nats_server, nats={"servers": servers}))
            assert took < 0.5, f"a reload took {took:.2f}s: the loop waited for NATS"
            time.sleep(0.3)
        # Back on the live server after each move (the first line is the start).
        wait_until(lambda: leaf.output().count(f"connected to NATS at {nats_server.url}") == 3, 10,
                   what="the connections after the moves back")
        gaps = watchdog_gaps(notify, start)
        assert gaps and max(gaps) < 0.75, f"watchdog gaps {gaps}: the loop stalled"
        with Client(nats_server.port) as client:
            health = valid("health", client.request("cim.leaf.leaf-01.health").data)
        assert health["checks"]["nats"]["server"] == nats_server.url
        # Moving to new settings is no reconnect: NATS was never lost.
        assert health["checks"]["nats"]["reconnects"] == 0
        assert "reconnected" not in leaf.output()
        began = time.monotonic()
        assert leaf.stop() == 0
        assert time.monotonic() - began < 3, "the stop waited for connect attempts to silent servers"
    finally:
        for server in silent:
            server.close()


def test_moved_to_another_server_while_reconnecting(daemons, notify, tmp_path):
    old, new = NatsServer(tmp_path, name="old").start(), NatsServer(tmp_path, name="new").start()
    try:
        leaf = daemons(leaf_config(old), notify=notify).start()
        notify.wait_for("READY", "1", timeout=10)
        for attempt in range(1, 4):  # each time the old link is dropped while it reconnects
            after = len(notify.snapshot())
            old.kill()
            notify.wait_for("STATUS", "Reconnecting to NATS (NATS connection lost)", after=after)
            reload_to(leaf, notify, leaf_config(new))
            wait_until(lambda: leaf.output().count(f"reconnected to NATS at {new.url}") == attempt, 10,
                       what=f"reconnect {attempt} to the new server")
            old.start()
            reload_to(leaf, notify, leaf_config(old))
            # A move while connected, not a reconnect (the first line is the start).
            moved_back = re.compile(f"(?<!re)connected to NATS at {re.escape(old.url)}")
            wait_until(lambda: len(moved_back.findall(leaf.output())) == 1 + attempt, 10,
                       what=f"move {attempt} back to the old server")
        with Client(old.port) as client:
            assert valid("health", client.request("cim.leaf.leaf-01.health").data)["status"] == "ok"
        assert leaf.stop() == 0
    finally:
        old.stop()
        new.stop()


def test_subscriptions_confirmed_too_late_are_given_up_and_retried(daemons, notify, nats_server):
    proxy = LateFlushProxy(nats_server, delay=8)
    try:
        leaf = daemons(leaf_config(proxy), notify=notify).start()
        notify.wait_for("STATUS", "Connecting to NATS (subscriptions not confirmed: Timeout)", timeout=10)
        notify.wait_for("READY", "1", timeout=10)  # on a new connection, not the stuck one
        assert proxy.connections >= 2
        with Client(nats_server.port) as client:
            assert valid("health", client.request("cim.leaf.health").data)["state"] == "connected"
        assert leaf.stop() == 0
    finally:
        proxy.close()


def test_sigterm_while_subscriptions_are_confirmed_never_sends_ready(daemons, notify, nats_server):
    proxy = LateFlushProxy(nats_server, delay=2)  # confirmed after the SIGTERM
    try:
        leaf = daemons(leaf_config(proxy), notify=notify).start()
        time.sleep(1)
        leaf.signal(signal.SIGTERM)
        assert leaf.wait(8) == 0
        keys = notify.keys()
        assert "STOPPING" in keys and "READY" not in keys, keys
    finally:
        proxy.close()

"""org.cim.Leaf1 on a private dbus-daemon, asked by busctl (an independent
client): the interface as proto/org.cim.Leaf1.xml declares it, live
properties and their PropertiesChanged, the methods, the shipped policy, and
`cim-leaf status`."""
import json
import os
import pwd
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from harness import BIN, ROOT, DbusDaemon, leaf_config, wait_until
from nats_client import Client
from payloads import valid

NAME, PATH, IFACE = "org.cim.Leaf1", "/org/cim/Leaf1", "org.cim.Leaf1"


def on_bus(daemons, notify, bus, server=None, kind="session", user=None, state_directory=None, **sections):
    env = {"DBUS_SESSION_BUS_ADDRESS": bus.address, "DBUS_SYSTEM_BUS_ADDRESS": bus.address}
    return daemons(leaf_config(server, dbus={"bus": kind}, **sections), notify=notify, env=env, user=user,
                   state_directory=state_directory).start()


def prop(bus, name, user=None):
    """A property's value as busctl prints it: 's "text"', 'b true', 't 42'."""
    return bus.busctl("get-property", NAME, PATH, IFACE, name, user=user).stdout.strip()


def call(bus, method, *args, user=None, check=True):
    return bus.busctl("call", NAME, PATH, IFACE, method, *args, user=user, check=check)


def string_reply(result):
    """busctl prints a string reply as: s "..." with C escapes."""
    out = result.stdout.strip()
    assert out.startswith('s "')
    return json.loads(out[2:])


@pytest.fixture
def ready_leaf(daemons, notify, session_bus, nats_server):
    leaf = on_bus(daemons, notify, session_bus, nats_server)
    notify.wait_for("READY", "1", timeout=10)
    return leaf


def test_interface_matches_the_proto_xml(ready_leaf, session_bus):
    declared = ET.parse(ROOT / "proto" / "org.cim.Leaf1.xml").getroot().find(f"interface[@name='{IFACE}']")
    introspected = session_bus.busctl("introspect", "--xml-interface", NAME, PATH).stdout
    live = ET.fromstring(introspected).find(f"interface[@name='{IFACE}']")
    for kind in ("method", "property", "signal"):
        names = lambda node: sorted(e.get("name") for e in node.findall(kind))  # noqa: E731
        assert names(live) == names(declared), kind
    for p in declared.findall("property"):
        assert live.find(f"property[@name='{p.get('name')}']").get("type") == p.get("type")


def test_properties_read_live_state(ready_leaf, session_bus, nats_server):
    version = subprocess.run([str(BIN), "--version"], capture_output=True, text=True).stdout.split()[1]
    assert prop(session_bus, "NodeId") == 's "leaf-01"'
    assert prop(session_bus, "Version") == f's "{version}"'
    assert prop(session_bus, "State") == 's "connected"'
    assert prop(session_bus, "Healthy") == "b true"
    assert prop(session_bus, "NatsConnected") == "b true"
    assert prop(session_bus, "NatsServer") == f's "{nats_server.url}"'
    assert prop(session_bus, "Reconnects") == "u 0"
    assert prop(session_bus, "LastError") == 's ""'
    first = int(prop(session_bus, "HeartbeatsSent").split()[1])
    wait_until(lambda: int(prop(session_bus, "HeartbeatsSent").split()[1]) > first, what="HeartbeatsSent to grow")


def test_get_health_is_the_nats_health_reply(ready_leaf, session_bus, nats_server):
    over_dbus = valid("health", string_reply(call(session_bus, "GetHealth")))
    with Client(nats_server.port) as client:
        over_nats = valid("health", client.request("cim.leaf.leaf-01.health").data)
    for key in ("type", "node", "version", "status", "state", "started"):
        assert over_dbus[key] == over_nats[key], key
    assert over_dbus["checks"]["dbus"] == {"status": "ok", "bus": "session", "name_owned": True}
    assert string_reply(call(session_bus, "Ping")) == "pong"


def test_reload_takes_the_sighup_path(ready_leaf, session_bus, notify):
    after = len(notify.snapshot())
    call(session_bus, "Reload")
    index, reloading = notify.wait_for("RELOADING", "1", after=after)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    notify.wait_for("READY", "1", after=index + 1)

    ready_leaf.write_config("heartbeat: {interval: soon}\n")
    result = call(session_bus, "Reload", check=False)
    assert result.returncode != 0
    assert 'heartbeat.interval: expected a duration like 500ms or 5s, got "soon"' in result.stderr
    assert ":1:23:" in result.stderr  # line:column of the bad value
    assert prop(session_bus, "State") == 's "connected"'  # the old config keeps running
    assert "reload rejected" in prop(session_bus, "LastError")
    assert prop(session_bus, "Healthy") == "b false"  # degraded until a good reload


def test_text_that_is_not_utf8_reaches_dbus_as_utf8(daemons, notify, session_bus, nats_server):
    """sd-bus refuses strings that are not UTF-8. A rejected reload's error
    names the config file, here at a path that is not UTF-8: LastError and its
    PropertiesChanged must still go out, and the daemon must live on. (NATS is
    up, so that no connect error replaces LastError meanwhile.)"""
    env = {"DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    leaf = daemons(leaf_config(nats_server, dbus={"bus": "session"}), notify=notify, env=env,
                   name="leaf-\udcff").start()  # byte 0xff in the file name
    notify.wait_for("READY", "1", timeout=10)
    leaf.write_config("heartbeat: {interval: soon}\n")
    leaf.signal(signal.SIGHUP)
    leaf.wait_for_log("still running the previous configuration")
    assert "reload rejected" in prop(session_bus, "LastError")
    assert "\\357\\277\\275.yaml" in prop(session_bus, "LastError")  # U+FFFD, as busctl escapes it
    rejected = call(session_bus, "Reload", check=False)
    assert rejected.returncode != 0 and "heartbeat.interval" in rejected.stderr
    assert session_bus.busctl("introspect", NAME, PATH).returncode == 0  # GetAll
    assert leaf.proc.poll() is None
    assert "PropertiesChanged" not in leaf.output()  # no warning: nothing failed
    assert leaf.stop() == 0


def test_properties_changed_follows_the_nats_connection(ready_leaf, session_bus, nats_server):
    monitor = subprocess.Popen(["dbus-monitor", "--address", session_bus.address,
                                f"type='signal',interface='org.freedesktop.DBus.Properties',path='{PATH}'"],
                               stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # dbus-monitor has no readiness signal; its match must be in place first
        nats_server.kill()
        wait_until(lambda: prop(session_bus, "State") == 's "reconnecting"', 10, what="reconnecting")
        nats_server.start()
        wait_until(lambda: prop(session_bus, "State") == 's "connected"', 10, what="connected again")
        assert prop(session_bus, "Reconnects") == "u 1"
    finally:
        monitor.send_signal(signal.SIGTERM)
        output = monitor.communicate(timeout=5)[0]
    changes = output.split("member=PropertiesChanged")
    assert any('"reconnecting"' in c and '"NatsConnected"' in c and "boolean false" in c for c in changes)
    assert any('"connected"' in c and "boolean true" in c for c in changes)
    assert "HeartbeatsSent" not in output  # annotated EmitsChangedSignal=false


def test_events_pending_and_dropped_on_dbus(daemons, notify, session_bus, nats_server):
    leaf = on_bus(daemons, notify, session_bus, nats_server, events={"delivery": "core"})
    notify.wait_for("READY", "1", timeout=10)
    assert (prop(session_bus, "EventsPending"), prop(session_bus, "EventsDropped")) == ("t 0", "t 0")
    monitor = subprocess.Popen(["dbus-monitor", "--address", session_bus.address,
                                f"type='signal',interface='org.freedesktop.DBus.Properties',path='{PATH}'"],
                               stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # dbus-monitor has no readiness signal
        nats_server.kill()
        wait_until(lambda: prop(session_bus, "State") == 's "reconnecting"', 10, what="reconnecting")
        leaf.signal(signal.SIGHUP)  # reloading, reloaded: kept in the spool
        wait_until(lambda: prop(session_bus, "EventsPending") == "t 2", 10, what="two events pending")
        nats_server.start()
        wait_until(lambda: prop(session_bus, "EventsPending") == "t 0", 10, what="the events delivered")
    finally:
        monitor.send_signal(signal.SIGTERM)
        output = monitor.communicate(timeout=5)[0]
    changes = output.split("member=PropertiesChanged")
    assert any('"EventsPending"' in c and "uint64 2" in c for c in changes)
    assert any('"EventsPending"' in c and "uint64 0" in c for c in changes)
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    human = subprocess.run([str(BIN), "status", "--bus", "session"], env=env, capture_output=True, text=True)
    assert "  Events:     core (not durable), 0 pending, 0 dropped\n" in human.stdout, human.stdout
    assert leaf.stop() == 0


def test_name_already_owned_is_a_clear_error(daemons, notify, session_bus, ready_leaf):
    second = on_bus(daemons, notify, session_bus)
    assert second.wait(5) == 1
    assert "org.cim.Leaf1 is already owned on the session bus: is another cim-leaf running?" in second.output()


def test_unreachable_bus_is_a_clear_error(daemons, notify, tmp_path):
    leaf = daemons(leaf_config(dbus={"bus": "session"}), notify=notify,
                   env={"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/nobody-here"}).start()
    assert leaf.wait(5) == 1
    assert "cannot connect to the session bus" in leaf.output()


def test_signals_are_honoured_while_the_bus_hangs_at_start_up(daemons, notify, session_bus):
    """A bus that accepts the connection and never answers (SIGSTOPped): the
    daemon waits for its name without blocking its loop."""
    session_bus.pause()
    leaf = on_bus(daemons, notify, session_bus)
    notify.wait_for("STATUS", "Connecting to the session bus")  # handlers installed, handshake under way
    time.sleep(0.5)
    leaf.signal(signal.SIGHUP)
    leaf.wait_for_log("configuration reloaded")
    sent = time.monotonic()
    leaf.signal(signal.SIGTERM)
    assert leaf.wait(3) == 0
    assert time.monotonic() - sent < 3  # the README's promise for SIGTERM
    assert "STOPPING" in notify.keys() and "READY" not in notify.keys()


def test_a_bus_that_does_not_answer_at_start_up_is_an_error_within_the_bound(daemons, notify, session_bus):
    session_bus.pause()
    started = time.monotonic()
    leaf = on_bus(daemons, notify, session_bus)
    assert leaf.wait(10 + 3) == 1  # dbus::start_bound, and the README
    assert time.monotonic() - started >= 10
    assert "the session bus did not answer within 10 s" in leaf.output()
    assert "READY" not in notify.keys()


HOLDING_BACK = "bus is not reading what the daemon sends"


def fill_the_socket(leaf, seconds=60):
    """Reload (two PropertiesChanged each) until the daemon says the bus has
    not read the last megabytes, or for `seconds`. The signals come from a
    shell of their own: sent from here, they starved the notify socket's
    reader thread of the GIL, and the daemon, blocked in sd_notify, reloaded
    too slowly to fill the socket at all."""
    hup = subprocess.Popen(["bash", "-c", f"while kill -HUP {leaf.proc.pid} 2>/dev/null; do :; done"])
    try:
        wait_until(lambda: HOLDING_BACK in leaf.output(), seconds, interval=0.05, what="PropertiesChanged held back")
    finally:
        hup.kill()
        hup.wait()


@pytest.fixture
def storming_leaf(daemons, notify, session_bus, nats_server):
    """A leaf for a reload storm against a hung bus. It runs as another user:
    root's sd-bus forces a 16 MiB socket buffer, which takes long to fill;
    others get net.core.wmem_max. Its spool is on tmpfs: each reload spools
    two events, and their fdatasync on disk would halve the storm."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as spool:
        yield on_bus(daemons, notify, session_bus, nats_server, user="nobody", state_directory=spool,
                     log={"level": "warn"})


@pytest.mark.reload_storm
def test_a_bus_hung_after_ready_stalls_nothing(storming_leaf, notify, session_bus, nats_server):
    leaf = storming_leaf
    notify.wait_for("READY", "1", timeout=10)
    session_bus.pause()
    fill_the_socket(leaf)
    with Client(nats_server.port) as client:
        assert valid("health", client.request("cim.leaf.leaf-01.health").data)["state"] == "connected"
    sent = time.monotonic()
    leaf.signal(signal.SIGTERM)
    assert leaf.wait(3) == 0  # sd-bus would flush the queue for the bus that does not read, forever
    assert time.monotonic() - sent < 3
    notify.wait_for("STOPPING", "1")  # the test's reader lags behind the reloads' datagrams
    assert HOLDING_BACK in leaf.output()


@pytest.mark.reload_storm
def test_changes_held_back_for_a_hung_bus_arrive_merged(storming_leaf, notify, session_bus, nats_server, tmp_path):
    leaf = storming_leaf
    notify.wait_for("READY", "1", timeout=10)
    with open(tmp_path / "monitor.log", "w") as log:
        monitor = subprocess.Popen(["dbus-monitor", "--address", session_bus.address,
                                    f"type='signal',interface='org.freedesktop.DBus.Properties',path='{PATH}'"],
                                   stdout=log)
    try:
        time.sleep(0.5)  # dbus-monitor has no readiness signal
        session_bus.pause()
        fill_the_socket(leaf)
        assert HOLDING_BACK in leaf.output()
        nats_server.kill()  # State, NatsConnected, NatsServer, LastError change while held back
        leaf.wait_for_log("NATS connection lost")
        session_bus.resume()
        wait_until(lambda: prop(session_bus, "State") == 's "reconnecting"', 10, what="the bus to answer again")
        wait_until(lambda: "boolean false" in (tmp_path / "monitor.log").read_text(), 10,
                   what="the held-back change")
    finally:
        monitor.terminate()
        monitor.wait(5)
    changes = (tmp_path / "monitor.log").read_text().split("member=PropertiesChanged")
    merged = [c for c in changes if '"NatsConnected"' in c]
    assert len(merged) == 1
    assert "boolean false" in merged[0] and '"reconnecting"' in merged[0] and '"LastError"' in merged[0]
    assert leaf.stop() == 0


def test_bus_going_away_ends_the_daemon(daemons, notify, session_bus, nats_server):
    leaf = on_bus(daemons, notify, session_bus, nats_server)
    notify.wait_for("READY", "1", timeout=10)
    session_bus.stop()
    assert leaf.wait(10) == 1
    assert "lost the D-Bus connection" in leaf.output()


def test_status_command(ready_leaf, session_bus, tmp_path):
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": session_bus.address}
    human = subprocess.run([str(BIN), "status", "--bus", "session"], env=env, capture_output=True, text=True)
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("cim-leaf leaf-01 (")
    assert ": connected, ok" in human.stdout
    for field in ("NATS:", "Events:", "Uptime:", "Heartbeats:", "Last error: none"):
        assert field in human.stdout
    as_json = subprocess.run([str(BIN), "status", "--bus", "session", "--json"], env=env, capture_output=True,
                             text=True)
    assert valid("health", json.loads(as_json.stdout))["node"] == "leaf-01"

    ready_leaf.stop()
    absent = subprocess.run([str(BIN), "status", "--bus", "session"], env=env, capture_output=True, text=True)
    assert absent.returncode == 3
    assert "cim-leaf is not running (nobody owns org.cim.Leaf1 on the session bus)" in absent.stderr


def timed_status(bus):
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus.address}
    started = time.monotonic()
    result = subprocess.run([str(BIN), "status", "--bus", "session"], env=env, capture_output=True, text=True,
                            timeout=10)
    return result, time.monotonic() - started


def test_status_against_a_hung_bus_exits_3_within_its_bound(session_bus):
    session_bus.pause()
    result, took = timed_status(session_bus)
    assert result.returncode == 3
    assert 5 <= took < 7
    assert "cim-leaf status: the session bus did not answer within 5 s" in result.stderr


def test_status_against_a_hung_daemon_exits_3_within_its_bound(ready_leaf, session_bus):
    ready_leaf.signal(signal.SIGSTOP)
    try:
        result, took = timed_status(session_bus)
    finally:
        ready_leaf.signal(signal.SIGCONT)
    assert result.returncode == 3
    assert 5 <= took < 7
    assert "cim-leaf status: org.cim.Leaf1 did not answer on the session bus within 5 s" in result.stderr


@pytest.fixture
def system_bus(tmp_path):
    """A system-style bus whose policy is only the shipped org.cim.Leaf1.conf."""
    policy = tmp_path / "system.d"
    policy.mkdir()
    (policy / "org.cim.Leaf1.conf").write_text((ROOT / "daemon" / "dbus" / "org.cim.Leaf1.conf").read_text())
    bus = DbusDaemon(tmp_path, policy_dir=policy).start()
    yield bus
    bus.stop()


@pytest.fixture(scope="module")
def leaf_user():
    try:
        pwd.getpwnam("cim-leaf")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "cim-leaf"],
                       check=True)
    return "cim-leaf"


def test_policy_on_a_system_bus(daemons, notify, system_bus, nats_server, leaf_user):
    leaf = on_bus(daemons, notify, system_bus, nats_server, kind="system", user=leaf_user)
    notify.wait_for("READY", "1", timeout=10)
    nobody = "nobody"
    # Anyone may introspect, read properties, Ping and GetHealth...
    assert prop(system_bus, "State", user=nobody) == 's "connected"'
    assert system_bus.busctl("introspect", NAME, PATH, user=nobody).returncode == 0
    assert string_reply(call(system_bus, "Ping", user=nobody)) == "pong"
    assert valid("health", string_reply(call(system_bus, "GetHealth", user=nobody)))["node"] == "leaf-01"
    # ...only root may Reload.
    denied = call(system_bus, "Reload", user=nobody, check=False)
    assert denied.returncode != 0 and "Access denied" in denied.stderr
    call(system_bus, "Reload")
    leaf.wait_for_log("configuration reloaded")
    assert leaf.stop() == 0


def test_policy_lets_only_cim_leaf_own_the_name(daemons, notify, system_bus):
    leaf = on_bus(daemons, notify, system_bus, kind="system", user="nobody", systemd={"ready_on": "started"})
    assert leaf.wait(5) == 1
    assert "the system bus policy does not let this user own org.cim.Leaf1" in leaf.output()

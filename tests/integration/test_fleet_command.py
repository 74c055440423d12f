"""`cim-leaf fleet`: the operator's view of every leaf, against a real
nats-server (and a hub with leaf node servers), real daemons, and the
fleet's own nats.c connection."""
import json
import os
import pty
import signal
import subprocess
import time

import pytest

from harness import BIN, NatsServer, free_port, start_leaf, wait_until
from nats_client import Client
from payloads import valid


def fleet(*args, env=None, timeout=30):
    """Runs `cim-leaf fleet`; its stdout is a pipe, so never coloured."""
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CREDENTIALS_DIRECTORY")}
    return subprocess.run([str(BIN), "fleet", *args], capture_output=True, text=True, timeout=timeout,
                          env={**environment, **(env or {})})


def rows(output):
    """The table's lines after its header, up to the first empty line."""
    lines = output.splitlines()
    assert lines[0].split() == ["NODE", "STATUS", "STATE", "UPTIME", "UPLINK", "PENDING", "VERSION", "HEARTBEAT"]
    return lines[1:lines.index("")]


def cells(output):
    """Each row as {column: text}, cut where the header's titles start."""
    header = output.splitlines()[0]
    titles = header.split()
    starts = [header.index(title) for title in titles] + [None]
    return [{title: line[starts[i]:starts[i + 1]].strip() for i, title in enumerate(titles)} for line in rows(output)]


def summary(output):
    return output.rstrip("\n").splitlines()[-1]


@pytest.fixture
def three_leaves(daemons, notify, nats_server):
    """Leaves started in an order that is not the sorted one."""
    return {node: start_leaf(daemons, notify, nats_server, node_id=node) for node in ("leaf-c", "leaf-a", "leaf-b")}


def test_every_leaf_one_line_sorted_with_a_summary(nats_server, three_leaves):
    with Client(nats_server.port) as client:  # each has sent its first heartbeat
        wait_until(lambda: all(json.loads(r.data)["last_heartbeat"] for r in
                               client.gather("cim.leaf.health", wait=0.5, expect=3)), what="three heartbeats")
    result = fleet("--server", nats_server.url)
    assert result.returncode == 0, result.stderr
    table = cells(result.stdout)
    assert [row["NODE"] for row in table] == ["leaf-a", "leaf-b", "leaf-c"]
    for row in table:
        assert (row["STATUS"], row["STATE"], row["UPLINK"], row["PENDING"]) == ("ok", "connected", "-", "0")
        assert row["VERSION"] == "0.1.0"
        assert row["HEARTBEAT"].endswith("s ago") and row["UPTIME"].endswith("s")
    # The columns line up: every row has its STATUS where the header has it.
    header = result.stdout.splitlines()[0]
    assert {line.index(" ok ") + 1 for line in rows(result.stdout)} == {header.index("STATUS")}
    assert summary(result.stdout) == "3 leaves: 3 ok, 0 degraded, 0 failing"
    assert "\x1b" not in result.stdout  # not a terminal
    assert result.stderr == ""


def test_a_killed_leaf_is_missing_by_count_and_by_name(nats_server, three_leaves):
    three_leaves["leaf-b"].proc.kill()
    three_leaves["leaf-b"].proc.wait()

    by_count = fleet("--server", nats_server.url, "--expect", "3", "--timeout", "1s")
    assert by_count.returncode == 1
    assert [line.split()[0] for line in rows(by_count.stdout)] == ["leaf-a", "leaf-c"]
    assert summary(by_count.stdout) == "2 leaves: 2 ok, 0 degraded, 0 failing; expected 3, 2 answered"

    by_name = fleet("--server", nats_server.url, "--expect", "leaf-a,leaf-b,leaf-c", "--timeout", "1s")
    assert by_name.returncode == 1
    assert summary(by_name.stdout) == \
        "2 leaves: 2 ok, 0 degraded, 0 failing; expected 3, 2 answered; missing: leaf-b"

    assert fleet("--server", nats_server.url, "--expect", "2", "--timeout", "1s").returncode == 0
    assert fleet("--server", nats_server.url, "--expect", "leaf-a,leaf-c", "--timeout", "1s").returncode == 0


def test_with_expect_it_stops_waiting_once_the_expected_have_answered(nats_server, three_leaves):
    for expect in ("3", "leaf-a,leaf-b,leaf-c"):
        started = time.monotonic()
        result = fleet("--server", nats_server.url, "--expect", expect, "--timeout", "20s")
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 5
        assert len(rows(result.stdout)) == 3


def test_json_for_scripts(nats_server, three_leaves):
    result = fleet("--server", nats_server.url, "--json", "--expect", "leaf-a,leaf-b,leaf-z", "--timeout", "1s")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert [valid("health", leaf)["node"] for leaf in document["leaves"]] == ["leaf-a", "leaf-b", "leaf-c"]
    assert document["summary"] == {"answered": 3, "ok": 3, "degraded": 0, "failing": 0, "expected": 3,
                                   "expected_nodes": ["leaf-a", "leaf-b", "leaf-z"], "missing": ["leaf-z"],
                                   "duplicates": [], "unreadable": 0}


def test_colour_on_a_terminal_only_and_never_with_no_color(nats_server, three_leaves):
    def on_terminal(extra_env):
        environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        master, slave = pty.openpty()
        proc = subprocess.Popen([str(BIN), "fleet", "--server", nats_server.url, "--expect", "3"], stdout=slave,
                                stderr=subprocess.DEVNULL, env={**environment, **extra_env})
        os.close(slave)
        output = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            output += chunk
        os.close(master)
        assert proc.wait(10) == 0
        return output.decode()

    assert "\x1b[32mok\x1b[0m" in on_terminal({})
    assert "\x1b" not in on_terminal({"NO_COLOR": "1"})


def test_a_failing_leaf_fails_the_command(daemons, notify, nats_server):
    """A daemon that answers on NATS is connected, and one without its D-Bus
    name does not connect to NATS at all: `failing` reaches the fleet only
    from a health taken the moment something failed. So this leaf is a
    client that answers with a real leaf's health, made failing as the
    schema allows."""
    start_leaf(daemons, notify, nats_server, node_id="leaf-a")
    with Client(nats_server.port) as client:
        model = valid("health", client.request("cim.leaf.leaf-a.health").data)
        broken = {**model, "node": "leaf-x", "status": "failing",
                  "checks": {**model["checks"], "dbus": {"status": "failing", "bus": "system", "name_owned": False}}}
        valid("health", broken)
        client.subscribe("cim.leaf.health")
        proc = subprocess.Popen([str(BIN), "fleet", "--server", nats_server.url, "--timeout", "2s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        request = client.next_msg(subject="cim.leaf.health")
        client.publish(request.reply, json.dumps(broken))
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1, err
    assert [line.split()[:2] for line in rows(out)] == [["leaf-a", "ok"], ["leaf-x", "failing"]]
    assert "leaf-x: D-Bus name not owned on the system bus\n" in out
    assert summary(out) == "2 leaves: 1 ok, 0 degraded, 1 failing"


def leaf_server(tmp_path, name, hub_leafnode_port):
    """A leaf host's own nats-server, as the CIM leaf topology has it: a leaf
    node of the hub, JetStream in its own domain, its monitoring endpoint on
    the loopback."""
    monitor = free_port()
    server = NatsServer(tmp_path, name=name, extra=f"""
http: 127.0.0.1:{monitor}
jetstream {{ store_dir: "{tmp_path / name}-js", domain: {name} }}
leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{hub_leafnode_port}" }} ] }}
""").start()
    server.monitor_url = f"http://127.0.0.1:{monitor}"
    return server


def test_on_the_hub_every_leaf_behind_its_own_leaf_node_server(daemons, notify, tmp_path):
    """The CIM leaf topology: each daemon on its host's nats-server, a leaf
    node of the hub; the operator asks on the hub."""
    hub_leafnode_port = free_port()
    hub = NatsServer(tmp_path, name="hub", extra=f"leafnodes {{ listen: 127.0.0.1:{hub_leafnode_port} }}").start()
    servers = []
    try:
        for node in ("leaf-2", "leaf-1", "leaf-3"):
            server = leaf_server(tmp_path, f"{node}-nats", hub_leafnode_port)
            servers.append(server)
            start_leaf(daemons, notify, server, node_id=node,
                       uplink={"monitor_url": server.monitor_url, "interval": "200ms"})
        with Client(hub.port) as client:  # the hub has every leaf's interest, and every uplink is up
            wait_until(lambda: sorted(json.loads(r.data)["checks"]["uplink"]["state"] for r in
                                      client.gather("cim.leaf.health", wait=0.5)) == ["up"] * 3,
                       10, what="three leaves with their uplink up, seen from the hub")

        result = fleet("--server", hub.url, "--expect", "3")
        assert result.returncode == 0, result.stderr
        assert [line.split()[0] for line in rows(result.stdout)] == ["leaf-1", "leaf-2", "leaf-3"]
        assert [(row["UPLINK"], row["PENDING"]) for row in cells(result.stdout)] == [("up", "0")] * 3
        # Each leaf's events went to the stream on its own server.
        assert all(leaf["checks"]["events"]["delivery"] == "jetstream" for leaf in
                   json.loads(fleet("--server", hub.url, "--expect", "3", "--json").stdout)["leaves"])

        servers[0].kill()  # leaf-2's host is gone from the hub's view
        result = fleet("--server", hub.url, "--expect", "leaf-1,leaf-2,leaf-3", "--timeout", "1s")
        assert result.returncode == 1
        assert summary(result.stdout).endswith("expected 3, 2 answered; missing: leaf-2")
    finally:
        for server in servers:
            server.stop()
        hub.stop()


def test_a_leaf_whose_uplink_is_down_is_degraded_and_says_why(daemons, notify, tmp_path):
    """Asked on the leaf host itself, whose server cannot reach its hub."""
    server = leaf_server(tmp_path, "lonely-nats", free_port())
    try:
        start_leaf(daemons, notify, server, node_id="lonely",
                   uplink={"monitor_url": server.monitor_url, "interval": "200ms"})
        with Client(server.port) as client:
            wait_until(lambda: valid("health", client.request("cim.leaf.lonely.health").data)["checks"]["uplink"]
                       ["state"] == "down", 10, what="the uplink down")
        result = fleet("--server", server.url, "--expect", "1")
        assert result.returncode == 0, result.stderr  # degraded is not failing
        (row,) = cells(result.stdout)
        assert (row["NODE"], row["STATUS"], row["UPLINK"]) == ("lonely", "degraded", "down")
        assert "lonely: uplink down" in result.stdout
        assert summary(result.stdout) == "1 leaf: 0 ok, 1 degraded, 0 failing; expected 1, 1 answered"
    finally:
        server.stop()


def test_no_leaf_at_all_is_said_at_once(nats_server):
    started = time.monotonic()
    result = fleet("--server", nats_server.url)
    assert time.monotonic() - started < 1.5  # the server says nobody subscribes: no waiting for the timeout
    assert result.returncode == 0
    assert result.stdout == "no leaf answered\n"
    assert result.stderr == "cim-leaf fleet: nobody subscribes to cim.leaf.health\n"
    assert fleet("--server", nats_server.url, "--expect", "1").returncode == 1


def test_the_prefix_from_the_flag_or_the_file(daemons, notify, nats_server, tmp_path):
    start_leaf(daemons, notify, nats_server, node_id="site-leaf", subjects={"prefix": "site1.leaves"})
    assert fleet("--server", nats_server.url, "--expect", "1", "--timeout", "1s").returncode == 1
    assert fleet("--server", nats_server.url, "--prefix", "site1.leaves", "--expect", "1").returncode == 0
    config = tmp_path / "fleet.yaml"
    config.write_text(f"nats: {{servers: [{nats_server.url}]}}\nsubjects: {{prefix: site1.leaves}}\n")
    result = fleet("--config", str(config), "--expect", "site-leaf")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)[0].startswith("site-leaf ")


def test_credentials_from_the_config_file_or_the_flags(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, extra='authorization { token: "s3cret-t0ken" }').start()
    token = tmp_path / "token"
    token.write_text("s3cret-t0ken\n")
    try:
        start_leaf(daemons, notify, server, node_id="leaf-a", nats={"token_file": str(token)})
        # As the daemon reads it: an absolute path, or a credential name in $CREDENTIALS_DIRECTORY.
        config = tmp_path / "fleet.yaml"
        config.write_text(f"nats: {{servers: [{server.url}], token_file: {token}}}\n")
        assert fleet("--config", str(config), "--expect", "1").returncode == 0
        config.write_text(f"nats: {{servers: [{server.url}], token_file: token}}\n")
        assert fleet("--config", str(config), "--expect", "1",
                     env={"CREDENTIALS_DIRECTORY": str(tmp_path)}).returncode == 0
        # Flags stand in for the file's settings; a relative path is the working directory's.
        result = subprocess.run([str(BIN), "fleet", "--server", server.url, "--token-file", "token", "--expect", "1"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr

        # Without a token, and with a wrong one: NATS cannot be used.
        denied = fleet("--server", server.url)
        assert denied.returncode == 3
        assert denied.stderr == \
            f"cim-leaf fleet: NATS refused the credentials: Authorization Violation ({server.url})\n"
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-t0ken\n")
        assert fleet("--config", str(config), "--token-file", str(wrong)).returncode == 3
        for result in (denied, fleet("--config", str(config), "--token-file", str(wrong))):
            assert "t0ken" not in result.stdout + result.stderr
    finally:
        server.stop()


def test_a_request_the_server_does_not_permit(tmp_path):
    server = NatsServer(tmp_path, extra="""authorization { users: [
        { user: ops, password: pw, permissions: { publish: { deny: ["cim.leaf.health"] } } } ] }""").start()
    password = tmp_path / "password"
    password.write_text("pw\n")
    try:
        result = fleet("--server", server.url, "--user", "ops", "--password-file", str(password))
        assert result.returncode == 3
        assert result.stderr == ('cim-leaf fleet: NATS refused the request: Permissions Violation for Publish to '
                                 f'"cim.leaf.health" ({server.url})\n')
    finally:
        server.stop()


def test_a_server_that_is_down(tmp_path):
    url = f"nats://127.0.0.1:{free_port()}"
    result = fleet("--server", url)
    assert result.returncode == 3
    assert result.stderr == f"cim-leaf fleet: cannot connect to NATS: no server reachable ({url})\n"
    assert result.stdout == ""


def test_tls_is_never_negotiated_away(nats_server):
    """The daemon's own connection rules: tls:// to a server without TLS is an error, not plain text."""
    url = f"tls://127.0.0.1:{nats_server.port}"
    result = fleet("--server", url)
    assert result.returncode == 3
    assert "the server does not offer TLS, which tls:// and nats.tls require; not falling back to plain text" in \
        result.stderr


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "cim-leaf: unknown argument to fleet: --bogus\n"),
    (["--expect", "0"], "cim-leaf: --expect needs a count of at least 1"),
    (["--expect", "leaf.a"], 'cim-leaf: --expect: "leaf.a" is not a node id'),
    (["--timeout", "soon"], "cim-leaf: --timeout must be a duration like 500ms or 5s"),
    (["--server"], "cim-leaf: --server needs a value\n"),
    (["--server", "http://127.0.0.1:4222"],
     'cim-leaf fleet: --server: nats.servers: expected a URL like nats://host:4222 or tls://host:4222 (no user or '
     'password in it), got "http://127.0.0.1:4222"\n'),
    (["--server", "nats://a:1,tls://b:2"], "cim-leaf fleet: --server: nats.servers: mixes nats:// and tls://"),
    (["--server", "nats://a:1", "--prefix", "cim.>"], "cim-leaf fleet: --prefix: subjects.prefix: expected dot"),
    (["--server", "nats://a:1", "--user", "ops"], "cim-leaf fleet: --user: nats.user: needs nats.password_file"),
    (["--server", "nats://a:1", "--creds", "/nonexistent.creds"],
     "cim-leaf fleet: --creds: nats.credentials_file: /nonexistent.creds: cannot open: No such file or directory"),
], ids=["unknown", "expect-0", "expect-name", "timeout", "no-value", "url", "mixed-tls", "prefix", "user-alone",
        "creds-missing"])
def test_usage_errors(args, message):
    result = fleet(*args)
    assert result.returncode == 64
    assert result.stderr.startswith(message)
    assert "Usage:\n" in result.stderr
    assert result.stdout == ""


def test_an_invalid_config_file_is_a_configuration_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("nats:\n  servers: [nats://127.0.0.1:4222]\n  reconnect: {wait: soon}\n")
    result = fleet("--config", str(config))
    assert result.returncode == 78
    assert result.stderr.startswith(
        f"cim-leaf fleet: {config}:3:21: nats.reconnect.wait: expected a duration like 500ms or 5s, got \"soon\"\n")
    # The flags do not make a broken file usable, nor does a missing one pass.
    assert fleet("--config", str(config), "--server", "nats://127.0.0.1:1").returncode == 78
    missing = fleet("--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 78
    assert f"{tmp_path}/nope.yaml: cannot open: No such file or directory" in missing.stderr

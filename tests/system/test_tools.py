"""Checks of the test tooling itself, runnable without containers: the nats
shim against a real nats-server, and the scenario scripts as the NixOS
driver sees them (pyflakes and mypy over lib.py + scenario + call)."""
import json
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from machines import HERE, SCENARIOS
from nats_client import Client

SHIM = [sys.executable, str(HERE / "nats_shim.py")]

# The NixOS driver type-checks testScript with its Machine in scope.
DRIVER_PRELUDE = '''from typing import Callable, Optional, Tuple
class Machine:
    name: str
    def start(self, allow_reboot: bool = False) -> None: pass
    def succeed(self, *commands: str, timeout: Optional[int] = None) -> str: return ""
    def fail(self, *commands: str, timeout: Optional[int] = None) -> str: return ""
    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Optional[int] = 900) -> Tuple[int, str]: return 0, ""
    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str: return ""
    def wait_until_fails(self, command: str, timeout: int = 900) -> str: return ""
    def wait_for_unit(self, unit: str, user: Optional[str] = None, timeout: int = 900) -> None: pass
    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None: pass
    def systemctl(self, q: str, user: Optional[str] = None) -> Tuple[int, str]: return 0, ""
    def log(self, msg: str) -> None: pass
machine: Machine
hub: Machine
leaf1: Machine
leaf2: Machine
'''
CALLS = {
    "single": 'run_single(machine, nats_unit="nats.service")',
    "fleet": 'run_fleet(hub, [leaf1, leaf2], nats_unit="nats.service")',
    "lifecycle": 'def apply_config(m, variant):\n'
                 '    m.succeed(f"/run/booted-system/specialisation/{variant}/bin/switch-to-configuration test")\n'
                 'run_lifecycle(machine, nats_unit="nats.service", apply_config=apply_config,'
                 ' can_write_bad_config=False)',
    "units": 'run_units(machine, nats_unit="nats.service")',
}


def nixos_call(name):
    """The call line vm-tests/<name>.nix appends to the script (its Nix
    interpolations replaced by a string), or ours if there is no such file."""
    nix = SCENARIOS.parent / f"{name}.nix"
    if nix.exists():
        m = re.search(r"^\s*(run_\w+\(.*\))\s*$", nix.read_text(), re.M)
        assert m, f"{nix} calls no run_* function"
        return re.sub(r"\$\{[^}]*\}", "/nix/store/placeholder", m.group(1))
    return CALLS[name]


def scenario_script(name):
    return (SCENARIOS / "lib.py").read_text() + (SCENARIOS / f"{name}.py").read_text() + "\n" + nixos_call(name) + "\n"


@pytest.mark.parametrize("name", CALLS)
def test_scenario_lints_like_nixos(name, tmp_path):
    if shutil.which("pyflakes3") is None or shutil.which("mypy") is None:
        pytest.skip("needs pyflakes3 and mypy (tests/apt-packages.txt)")
    script = tmp_path / f"{name}.py"
    script.write_text(scenario_script(name))
    env = {"PYFLAKES_BUILTINS": "machine,hub,leaf1,leaf2,start_all,subtest", "PATH": "/usr/bin:/bin"}
    flakes = subprocess.run(["pyflakes3", str(script)], capture_output=True, text=True, env=env)
    assert flakes.returncode == 0, flakes.stdout + flakes.stderr
    typed = tmp_path / f"{name}_typed.py"
    typed.write_text(DRIVER_PRELUDE + scenario_script(name))
    result = subprocess.run(["mypy", "--no-error-summary", "--cache-dir", str(tmp_path / "mypy"), str(typed)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory):
    if shutil.which("nats-server") is None:
        pytest.skip("needs nats-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path_factory.mktemp("jetstream")
    server = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and server.poll() is None, "nats-server did not start"
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def shim(url, *args):
    return subprocess.run([*SHIM, "--server", url, *args], capture_output=True, text=True, timeout=30)


def test_shim_sub_and_pub(nats_url):
    sub = subprocess.Popen([*SHIM, "sub", "--raw", "--count=2", "a.b", "--server", nats_url],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert shim(nats_url, "pub", "a.b", '{"n":1}').returncode == 0
    assert shim(nats_url, "pub", "a.b", "two").returncode == 0
    assert sub.communicate(timeout=10)[0] == '{"n":1}\ntwo\n'


def test_shim_req_and_micro(nats_url):
    """A fake two-instance service answers health and $SRV requests."""
    responder = Client.from_url(nats_url, 5)
    for subject in ("cim.leaf.health", "$SRV.PING", "$SRV.PING.cim-leaf", "$SRV.INFO.cim-leaf"):
        responder.subscribe(subject)

    def answer(count):
        for _ in range(count):
            reply = responder.next_msg(timeout=10).reply
            for node in ("n1", "n2"):
                responder.publish(reply, json.dumps({"type": "t", "name": "cim-leaf", "id": node, "node": node,
                                                     "version": "1.0.0", "metadata": {},
                                                     "endpoints": [{"name": "health", "subject": "x.health"}]}))

    def ask(*args):
        proc = subprocess.Popen([*SHIM, "--server", nats_url, "--timeout=1s", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        answer(1)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        return out

    assert [json.loads(line)["node"] for line in ask("req", "--raw", "--replies=2", "cim.leaf.health", "").splitlines()] \
        == ["n1", "n2"]
    listing = ask("micro", "ls")
    assert "cim-leaf" in listing and "n1" in listing and "n2" in listing
    info = ask("micro", "info", "cim-leaf")
    assert "x.health" in info and "n2" in info
    nobody = shim(nats_url, "req", "nobody.listens", "")
    assert nobody.returncode == 1 and "no responders" in nobody.stderr


class HostMachine:
    """The driver's succeed() on this host, with the shim as `nats`."""

    def __init__(self, bindir):
        self.path = f"{bindir}:/usr/bin:/bin"

    def succeed(self, command):
        result = subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], capture_output=True, text=True,
                                env={"PATH": self.path}, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout


def test_scenario_reads_a_stream_through_the_shim(nats_url, tmp_path):
    """lib.py's stream_messages, as the fleet scenario runs it on the hub, against a real JetStream."""
    (tmp_path / "nats").write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'nats_shim.py'} \"$@\"\n")
    (tmp_path / "nats").chmod(0o755)
    machine = HostMachine(tmp_path)
    scenario = {}
    exec((SCENARIOS / "lib.py").read_text(), scenario)
    read = scenario["stream_messages"]

    client = Client.from_url(nats_url)
    created = client.request("$JS.API.STREAM.CREATE.EV", json.dumps({"name": "EV", "subjects": ["ev.>"]})).json()
    assert "error" not in created, created
    assert read(machine, "EV", nats_url) == []
    sent = [("ev.a", {"n": 1}), ("ev.b", {"n": 2, "s": "x\ny"}), ("ev.a", {"n": 3})]
    for n, (subject, payload) in enumerate(sent, 1):
        ack = client.request(subject, json.dumps(payload), headers={"Nats-Msg-Id": f"id-{n}", "X-Other": "a: b"})
        assert ack.json()["seq"] == n, ack.json()
    assert read(machine, "EV", nats_url) == [(subject, {"Nats-Msg-Id": f"id-{n}", "X-Other": "a: b"}, payload)
                                            for n, (subject, payload) in enumerate(sent, 1)]
    with pytest.raises(AssertionError, match="stream NONE: .*not found"):
        read(machine, "NONE", nats_url)

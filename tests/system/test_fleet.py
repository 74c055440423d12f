"""vm-tests/scenarios/fleet.py on Debian: the CIM leaf topology as
vm-tests/fleet.nix has it, configured as an admin would on Debian. The hub
container runs nats-server with a TLS leafnode port and JetStream in domain
`hub`; each leaf container runs nats-server.service as a leaf node of the hub
(JetStream domain = node id, monitoring on the loopback) and cim-leaf.service
on it, with what services.cim-leaf.hub sets on NixOS
(nixos-module/leaf-node.nix). As there, the TLS files are root's alone and
reach nats-server through LoadCredential=, with PrivateUsers=yes like
nixpkgs' nats.service. Each container has its own network namespace, on a
bridge private to the test (the host's network stays out of it)."""
import os
import subprocess
import time

import pytest

from conftest import steps_as_params
from machines import JETSTREAM_STORE, NATS_UNIT, load_scenario
from harness import make_certificates

SCENARIO = load_scenario("fleet")
XFAIL = {}
HUB_ADDRESS = "10.231.0.1"
LEAVES = ["leaf1", "leaf2"]

# Where the TLS files are in a container (root's, 0600), and where
# LoadCredential= puts them for nats-server.
TLS_DIR = "/etc/cim-leaf-test"
CREDENTIALS = "/run/credentials/nats-server.service"

HUB_NATS = f"""server_name: hub
jetstream {{ store_dir: "{JETSTREAM_STORE}", domain: hub }}
leafnodes {{
  listen: "0.0.0.0:7422"
  tls {{ cert_file: "{CREDENTIALS}/hub.pem", key_file: "{CREDENTIALS}/hub.key" }}
}}
"""
HUB_SERVICE = f"LoadCredential=hub.pem:{TLS_DIR}/hub.pem\nLoadCredential=hub.key:{TLS_DIR}/hub.key\nPrivateUsers=yes\n"


def leaf_nats(node):
    return f"""server_name: {node}
http: "127.0.0.1:8222"
jetstream {{ store_dir: "{JETSTREAM_STORE}", domain: {node} }}
leafnodes {{ remotes: [ {{ urls: ["tls://hub:7422"], tls: {{ ca_file: "{CREDENTIALS}/hub-ca.pem" }} }} ] }}
"""


LEAF_SERVICE = f"LoadCredential=hub-ca.pem:{TLS_DIR}/ca.pem\nPrivateUsers=yes\n"


def leaf_config(node):
    return f"""node:
  id: {node}
  labels:
    suite: system-test
nats:
  servers: ["nats://127.0.0.1:4222"]
heartbeat:
  interval: 1s
events:
  stream:
    domain: {node}
    subjects: this-node
uplink:
  monitor_url: http://127.0.0.1:8222
  interval: 1s
watch:
  units: [{NATS_UNIT}, {SCENARIO["FLEET_WATCHED_UNIT"]}]
"""


# The scenario's watched unit (the leaf node's own unit is watched too, as
# services.cim-leaf.hub adds it); the scenario starts it.
DEMO_UNIT = "[Service]\nExecStart=/bin/sleep infinity\n"


def new_namespace():
    """A process holding a network namespace of its own, once it has it."""
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"], start_new_session=True)
    path = f"/proc/{holder.pid}/ns/net"
    deadline = time.monotonic() + 10
    while os.readlink(path) == os.readlink("/proc/self/ns/net"):  # not unshared yet
        assert time.monotonic() < deadline and holder.poll() is None, "unshare --net did not start"
        time.sleep(0.01)
    return holder, path


def ip(namespace, *commands):
    subprocess.run(["nsenter", f"--net={namespace}", "sh", "-ec", "; ".join(commands)], check=True)


@pytest.fixture(scope="module")
def network(rootfs):
    """name -> network namespace: the hub's has a bridge at HUB_ADDRESS, each
    leaf's a veth on it."""
    holders = []
    try:
        holder, hub = new_namespace()
        holders.append(holder)
        ip(hub, "ip link set lo up", "ip link add br0 type bridge", f"ip addr add {HUB_ADDRESS}/24 dev br0",
           "ip link set br0 up")
        namespaces = {"hub": hub}
        for n, name in enumerate(LEAVES, 2):
            holder, namespaces[name] = new_namespace()
            holders.append(holder)
            ip(hub, f"ip link add {name} type veth peer name host0", f"ip link set host0 netns {holder.pid}",
               f"ip link set {name} master br0", f"ip link set {name} up")
            ip(namespaces[name], "ip link set lo up", f"ip addr add 10.231.0.{n}/24 dev host0",
               "ip link set host0 up")
        yield namespaces
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


@pytest.fixture(scope="module")
def fleet(boot, network, need_daemon_module, tmp_path_factory):
    certificates = tmp_path_factory.mktemp("tls")
    make_certificates(certificates, server_names="DNS:hub")

    def on(name):
        return [f"--network-namespace-path={network[name]}"]
    hub_files = {f"{TLS_DIR}/hub.pem": (certificates / "server.pem", 0o600),
                 f"{TLS_DIR}/hub.key": (certificates / "server.key", 0o600)}
    demo_unit = tmp_path_factory.mktemp("units") / SCENARIO["FLEET_WATCHED_UNIT"]
    demo_unit.write_text(DEMO_UNIT)
    machines = [boot("hub", on("hub"), nats_settings=HUB_NATS, nats_service=HUB_SERVICE, leaf=False,
                     files=hub_files)]
    for node in LEAVES:
        machines.append(boot(node, on(node), nats_settings=leaf_nats(node), nats_service=LEAF_SERVICE,
                             config=leaf_config(node), hosts=f"{HUB_ADDRESS} hub\n",
                             files={f"{TLS_DIR}/ca.pem": (certificates / "ca.pem", 0o600),
                                    f"/etc/systemd/system/{demo_unit.name}": (demo_unit, 0o644)}))
    return machines


@pytest.mark.parametrize("step", steps_as_params(SCENARIO["FLEET_STEPS"], XFAIL, raises=AssertionError))
def test_fleet(fleet, step):
    step(fleet, nats_unit=NATS_UNIT)

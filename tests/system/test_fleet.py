"""vm-tests/scenarios/fleet.py: a hub container running nats-server with
JetStream (as vm-tests/fleet.nix has it) and two leaf containers with
cim-leaf. All three share one private network namespace, so the leaves reach
the hub's server on 127.0.0.1:4222 (their own nats-server is disabled) while
the host's network stays out of it."""
import subprocess

import pytest

from conftest import NATS_UNIT, load_scenario, steps_as_params

SCENARIO = load_scenario("fleet")
XFAIL = {}


@pytest.fixture(scope="module")
def netns(rootfs):
    holder = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep infinity"],
                              start_new_session=True)
    yield f"/proc/{holder.pid}/ns/net"
    holder.kill()
    holder.wait()


@pytest.fixture(scope="module")
def fleet(boot, netns, need_daemon_module):
    network = [f"--network-namespace-path={netns}"]
    hub = boot("hub", network, jetstream=True, leaf=False)
    return [hub, boot("leaf1", network, nats_server=False), boot("leaf2", network, nats_server=False)]


@pytest.mark.parametrize("step", steps_as_params(SCENARIO["FLEET_STEPS"], XFAIL))
def test_fleet(fleet, step):
    step(fleet, nats_unit=NATS_UNIT)

"""vm-tests/scenarios/units.py on one container with a local nats-server:
the demo units the scenario names, as unit files in /etc/systemd/system (not
enabled: each step starts them), and cim-leaf watching them as
vm-tests/units.nix configures it."""
import json

import pytest

from conftest import steps_as_params
from machines import NATS_UNIT, load_scenario

SCENARIO = load_scenario("units")

SLEEPER = "[Service]\nExecStart=/bin/sleep infinity\n"
UNIT_FILES = {
    SCENARIO["DEMO_UNIT"]: SLEEPER,
    SCENARIO["CRITICAL_UNIT"]: SLEEPER,
    SCENARIO["RESTARTING_UNIT"]: SLEEPER + "Restart=on-failure\nRestartSec=2s\n",
}


def config_yaml(node):
    watch = {"units": SCENARIO["WATCHED_UNITS"], "critical": SCENARIO["CRITICAL_UNITS"]}
    return (f"node:\n  id: {node}\n  labels:\n    suite: system-test\n"
            f"nats:\n  servers: [\"nats://127.0.0.1:4222\"]\n"
            f"heartbeat:\n  interval: 1s\n"
            f"watch: {json.dumps(watch)}\n")


@pytest.fixture(scope="module")
def machine(boot, need_daemon_module, tmp_path_factory):
    sources = tmp_path_factory.mktemp("units")
    files = {}
    for name, text in UNIT_FILES.items():
        (sources / name).write_text(text)
        files[f"/etc/systemd/system/{name}"] = (sources / name, 0o644)
    return boot("units", config=config_yaml("units"), files=files)


@pytest.mark.parametrize("step", steps_as_params(SCENARIO["UNITS_STEPS"], {}))
def test_units(machine, step):
    step(machine, nats_unit=NATS_UNIT)

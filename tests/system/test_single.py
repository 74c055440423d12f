"""vm-tests/scenarios/single.py on one container with a local nats-server."""
import pytest

from conftest import steps_as_params
from machines import NATS_UNIT, load_scenario

SCENARIO = load_scenario("single")
# Steps that fail only because the daemon lacks a feature yet: name -> why.
XFAIL = {}


@pytest.fixture(scope="module")
def machine(boot):
    return boot("single")


@pytest.mark.parametrize("step", steps_as_params(SCENARIO["SINGLE_STEPS"], XFAIL))
def test_single(machine, need_daemon, step):
    step(machine, nats_unit=NATS_UNIT)

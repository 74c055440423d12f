"""vm-tests/scenarios/lifecycle.py on one container, plus checks of the unit
files themselves that only make sense here."""
import pytest

from conftest import apply_config, steps_as_params
from machines import BINARY, NATS_UNIT, load_scenario

SCENARIO = load_scenario("lifecycle")
XFAIL = {}
# Steps that only look at the unit, not at a running daemon.
STATIC_STEPS = {"lifecycle_security"}


@pytest.fixture(scope="module")
def machine(boot):
    return boot("lifecycle")


@pytest.mark.parametrize("step", steps_as_params(SCENARIO["LIFECYCLE_STEPS"], XFAIL))
def test_lifecycle(machine, step, request):
    if step.__name__ not in STATIC_STEPS:
        request.getfixturevalue("need_daemon")
    step(machine, nats_unit=NATS_UNIT, apply_config=apply_config, can_write_bad_config=True)


def test_unit_verifies(machine):
    out = machine.succeed("systemd-analyze verify cim-leaf.service 2>&1")
    if BINARY.exists():  # without the binary, verify rightly complains about ExecStart
        assert "cim-leaf" not in out, out


def test_meson_installs_the_unit_files(install_tree):
    if install_tree is None:
        pytest.skip("daemon not built")
    installed = {str(p.relative_to(install_tree)) for p in install_tree.rglob("*") if p.is_file()}
    for suffix in ("lib/systemd/system/cim-leaf.service", "lib/sysusers.d/cim-leaf.conf",
                   "share/dbus-1/system.d/org.cim.Leaf1.conf", "bin/cim-leaf"):
        assert any(p.endswith(suffix) for p in installed), f"meson install lacks */{suffix}: {sorted(installed)}"
    unit = next(install_tree.rglob("cim-leaf.service")).read_text()
    assert "@bindir@" not in unit and "/bin/cim-leaf --config" in unit, unit

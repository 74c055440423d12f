"""Fixtures of the system tests: a cached Debian rootfs, the daemon as
`meson install` lays it out, and booted containers driven through the same
scenario scripts as the NixOS VM tests (vm-tests/scenarios). The booting
itself is in machines.py, which the benchmarks share."""
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from machines import (BINARY, boot as boot_machine, config_yaml, meson_install,  # noqa: E402
                      missing_prerequisites, prepare_rootfs)


def pytest_configure(config):
    # Let a SIGTERM (CI timeout, kill) unwind like Ctrl-C, so fixture
    # finalizers and atexit tear the containers down.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


def steps_as_params(steps, xfail, raises=None):
    """One pytest case per scenario step, with known daemon gaps marked xfail
    (only for an exception of type `raises`, when given: a gap shows as a
    failed assertion, a broken setup as an error)."""
    return [pytest.param(step, id=step.__name__,
                         marks=[pytest.mark.xfail(reason=xfail[step.__name__], raises=raises, strict=False)]
                         if step.__name__ in xfail else [])
            for step in steps]


def apply_config(machine, variant):
    """The Debian side of lifecycle.py's apply_config: rewrite config.yaml."""
    interval = {"base": "5s", "fast": "1s"}[variant]
    machine.succeed(f"cat > /etc/cim-leaf/config.yaml <<'EOF'\n{config_yaml(machine.name, interval)}EOF")


@pytest.fixture(scope="session")
def rootfs():
    reason = missing_prerequisites()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return prepare_rootfs()


@pytest.fixture(scope="session")
def install_tree(tmp_path_factory):
    """DESTDIR of `meson install` from the lead's build dir, or None when the
    daemon is not built."""
    return meson_install(tmp_path_factory.mktemp("destdir"))


@pytest.fixture(scope="module")
def boot(rootfs, install_tree):
    """boot(name, ...) -> Machine (the options of machines.boot); every
    container is torn down after the module."""
    containers = []

    def make(name, *args, **options):
        return boot_machine(name, rootfs, install_tree, *args, started=containers.append, **options)

    yield make
    for container in containers:
        container.stop()


def skip_without_daemon():
    if not BINARY.exists():
        pytest.skip(f"{BINARY} is not built: run `meson setup build && meson compile -C build`")


@pytest.fixture
def need_daemon():
    skip_without_daemon()


@pytest.fixture(scope="module")
def need_daemon_module():
    skip_without_daemon()

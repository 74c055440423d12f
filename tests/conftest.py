"""Fixtures shared by the integration tests: every component is real and
private to the test (its own port, socket and temporary directory)."""
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "lib"))

from harness import BIN, Daemon, DbusDaemon, NatsServer, NotifySocket  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow_partition: waits half a minute for a swallowed link to be noticed; "
                            "left out of the sanitizer pass")
    config.addinivalue_line("markers", "reload_storm: reloads until a hung bus's socket is full; minutes under "
                                       "the sanitizers' debug build, so tests/run leaves them to the first pass")
    if not BIN.exists():
        raise pytest.UsageError(f"{BIN} does not exist: build first (meson setup build && meson compile -C build)")


def pytest_sessionfinish(session, exitstatus):
    """No nats-server outlives the tests, whatever failed."""
    for server in list(NatsServer.running):
        server.kill()


@pytest.fixture(scope="session")
def js_client():
    """nats.js and its peers installed (tests/js), for the tests that run them."""
    subprocess.run([str(Path(__file__).parent / "js" / "setup.sh")], check=True, capture_output=True)


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


@pytest.fixture
def session_bus(tmp_path):
    bus = DbusDaemon(tmp_path).start()
    yield bus
    bus.stop()


@pytest.fixture
def daemons(tmp_path):
    """Makes daemons; stops every one at the end, even when the test failed."""
    made = []

    def make(config, **kwargs):
        kwargs.setdefault("name", f"leaf{len(made)}")
        daemon = Daemon(tmp_path, config, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()

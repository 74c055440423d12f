"""Too few tasks for the daemon's threads (systemd's TasksMax=; a pids
cgroup here): whichever thread cannot be made, the daemon never aborts. It
exits 1 saying which thread it could not start, or it runs on, says what it
could not do, and stops cleanly."""
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from harness import BIN, asan_runtime, leaf_config, wait_until


@pytest.fixture
def pids_group():
    """A pids cgroup of its own (v1 or v2) whose pids.max the test sets."""
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if not (root / "pids.max").exists() and not (root / "cgroup.procs").exists():
            continue
        group = root / f"cim-leaf-test-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
        except OSError:
            continue
        if (group / "pids.max").exists():
            yield group
            for pid in (group / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), 5, what="the group empty")
            group.rmdir()
            return
        group.rmdir()
    pytest.skip("no pids cgroup to make here")


@pytest.mark.skipif(asan_runtime() is not None, reason="the sanitizers' runtime makes threads of its own")
@pytest.mark.parametrize("tasks", range(1, 11))
def test_too_few_tasks_for_its_threads_is_a_clear_exit_or_a_clean_run_never_an_abort(nats_server, tmp_path,
                                                                                     pids_group, tasks):
    (pids_group / "pids.max").write_text(str(tasks))
    config = tmp_path / "leaf.yaml"
    config.write_text(yaml.safe_dump(leaf_config(nats_server)))
    state = tmp_path / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["STATE_DIRECTORY"] = str(state)
    log = tmp_path / "leaf.log"
    procs = pids_group / "cgroup.procs"
    with open(log, "wb") as out:
        leaf = subprocess.Popen([str(BIN), "--config", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: procs.write_text(str(os.getpid())))
    try:
        code = leaf.wait(3)
    except subprocess.TimeoutExpired:
        leaf.send_signal(signal.SIGTERM)
        code = leaf.wait(10)
        assert code == 0, log.read_text()
    text = log.read_text()
    assert "terminate called" not in text and "Aborted" not in text, text
    if code != 0:
        assert code == 1, text
        assert "fatal: cannot start " in text and "Resource temporarily unavailable" in text, text

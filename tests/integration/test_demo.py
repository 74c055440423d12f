"""The README's first command: tests/demo runs the daemon for real against a
local nats-server with JetStream and prints its events and heartbeats until
Ctrl-C, which stops the daemon first, so that its `stopping` event shows."""
import os
import re
import signal
import subprocess

import pytest

from harness import BIN, ROOT, wait_until


@pytest.mark.skipif(BIN.resolve() != (ROOT / "build" / "daemon" / "cim-leaf").resolve(),
                    reason="tests/demo runs the daemon of build/")
def test_the_demo_shows_events_and_heartbeats_and_stops_cleanly_on_ctrl_c(tmp_path):
    out = tmp_path / "demo.out"
    with open(out, "wb") as f:
        demo = subprocess.Popen([str(ROOT / "tests" / "demo")], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_until(lambda: "cim.leaf.demo.heartbeat" in out.read_text(), 120, interval=0.1, what="a heartbeat")
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        assert demo.wait(10) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            # Its nats-server runs in a session of its own.
            work = re.search(r"config (\S+)/config\.yaml", out.read_text())
            if work:
                subprocess.run(["pkill", "-f", work.group(1)], check=False)
    text = out.read_text()
    for expected in ["created stream CIM_LEAF_EVENTS", "cim.leaf.demo.events.started", "cim.leaf.demo.events.ready",
                     "cim.leaf.demo.heartbeat", "cim.leaf.demo.events.stopping", " info stopped"]:
        assert expected in text, f"{expected!r} not in the demo's output:\n{text}"
    assert not re.search(r" (error|warning|critical) ", text), text
    # Nothing of it is left running, its temporary directory gone.
    work = re.search(r"config (\S+)/config\.yaml", text).group(1)
    assert work not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not os.path.exists(work)

"""The sd_notify protocol as systemd sees it, on a real notify socket the
test owns: READY, STATUS, WATCHDOG, RELOADING+MONOTONIC_USEC, STOPPING."""
import signal
import time
from pathlib import Path

from harness import NatsServer, free_port, leaf_config, wait_until


def started_config(**sections):
    """Ready without NATS or D-Bus: systemd.ready_on=started, dbus none."""
    return leaf_config(systemd={"ready_on": "started"}, **sections)


def test_ready_then_stopping_then_exit_0(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    leaf.signal(signal.SIGTERM)
    assert leaf.wait(5) == 0
    keys = notify.keys()
    assert keys.index("READY") < keys.index("STOPPING")
    assert keys.count("READY") == 1
    assert "stopped" in leaf.output()


def test_status_is_always_set_and_readable(daemons, notify):
    daemons(started_config(), notify=notify).start()
    _, ready = notify.wait_for("READY", "1")
    assert ready["STATUS"]  # READY carries what the daemon is doing
    statuses = [fields["STATUS"] for _, fields, _ in notify.snapshot() if "STATUS" in fields]
    assert all(s and "\n" not in s for s in statuses)
    assert any("Connecting to NATS" in s for s in statuses)


def test_ready_waits_for_nats_when_ready_on_connected(daemons, notify, tmp_path):
    server = NatsServer(tmp_path, port=free_port())
    leaf = daemons(leaf_config(server), notify=notify).start()
    time.sleep(1.0)
    assert "READY" not in notify.keys(), "READY before NATS was connected"
    assert leaf.proc.poll() is None
    server.start()
    try:
        _, ready = notify.wait_for("READY", "1", timeout=10)
        assert "Connected to nats://127.0.0.1" in ready["STATUS"]
    finally:
        leaf.stop()
        server.stop()


def test_watchdog_pings_at_half_the_interval(daemons, notify):
    # 400ms watchdog: a ping every ~200ms from the main loop.
    leaf = daemons(started_config(), notify=notify, env={"WATCHDOG_USEC": "400000"}).start()
    notify.wait_for("READY", "1")
    start = len(notify.snapshot())
    time.sleep(2.0)
    pings = [t for t, fields, _ in notify.snapshot()[start:] if fields.get("WATCHDOG") == "1"]
    assert 7 <= len(pings) <= 12, f"{len(pings)} watchdog pings in 2s, expected about 10"
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.4, f"a gap of {max(gaps):.3f}s would let systemd kill the service"
    leaf.stop()


def test_timers_do_not_burst_after_the_process_was_stopped(daemons, notify):
    # A paused process (SIGSTOP, a suspended VM) misses ticks; catching up on
    # all of them at once would be a burst of watchdog pings and heartbeats.
    leaf = daemons(started_config(), notify=notify, env={"WATCHDOG_USEC": "400000"}).start()
    notify.wait_for("READY", "1")
    leaf.signal(signal.SIGSTOP)
    time.sleep(2.0)  # ten ticks missed
    resumed = time.monotonic()
    leaf.signal(signal.SIGCONT)
    time.sleep(0.5)
    pings = [t for t, fields, _ in notify.snapshot() if fields.get("WATCHDOG") == "1" and t >= resumed]
    assert 1 <= len([t for t in pings if t < resumed + 0.15]) <= 2, f"pings after resuming: {pings}"
    assert leaf.stop() == 0


def test_no_watchdog_pings_without_watchdog_usec(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    time.sleep(0.5)
    assert "WATCHDOG" not in notify.keys()
    leaf.stop()


def reload_and_collect(leaf, notify):
    after = len(notify.snapshot())
    leaf.signal(signal.SIGHUP)
    index, reloading = notify.wait_for("RELOADING", "1", after=after)
    _, ready = notify.wait_for("READY", "1", after=index + 1)
    return reloading, ready


def test_sighup_good_config_reloading_then_ready(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    leaf.write_config(started_config(log={"level": "debug"}))
    reloading, ready = reload_and_collect(leaf, notify)
    # One datagram: RELOADING=1 and MONOTONIC_USEC together.
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert reloading["STATUS"] == "Reloading configuration"
    leaf.wait_for_log("configuration reloaded")
    assert leaf.proc.poll() is None
    leaf.stop()


def test_monotonic_usec_is_clock_monotonic(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, _ = reload_and_collect(leaf, notify)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    leaf.stop()


def test_sighup_bad_config_is_rejected_and_old_one_keeps_running(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    leaf.write_config("heartbeat:\n  interval: soon\n")
    reload_and_collect(leaf, notify)  # READY=1 even though the reload failed
    leaf.wait_for_log(r'reload rejected: .*:2:13: heartbeat.interval: expected a duration like 500ms or 5s, got "soon"')
    leaf.wait_for_log("still running the previous configuration")
    time.sleep(0.3)
    assert leaf.proc.poll() is None
    # And a later good reload still works.
    leaf.write_config(started_config())
    reload_and_collect(leaf, notify)
    leaf.wait_for_log("configuration reloaded")
    assert leaf.stop() == 0


def test_sighup_storm_leaves_daemon_ready(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    for _ in range(20):
        leaf.signal(signal.SIGHUP)
    wait_until(lambda: leaf.output().count("configuration reloaded") >= 1, what="a reload")
    time.sleep(0.5)
    keys = notify.keys()
    # Every RELOADING=1 is followed by a READY=1: the unit never stays stuck in "reloading".
    assert keys.count("RELOADING") == keys.count("READY") - 1
    assert keys[-1] == "READY"
    assert leaf.stop() == 0


def test_no_status_while_nothing_an_operator_reads_changes(daemons, notify, nats_server):
    # Each STATUS= wakes PID 1: heartbeats alone must not send one.
    leaf = daemons(leaf_config(nats_server), notify=notify).start()  # a heartbeat every 200 ms
    index, _ = notify.wait_for("READY", "1")
    time.sleep(2)
    assert [fields for _, fields, _ in notify.snapshot()[index + 1:]] == []
    nats_server.kill()  # what it says changes: one STATUS=
    leaf.wait_for_log("NATS connection lost")
    wait_until(lambda: any("Reconnecting" in fields.get("STATUS", "") for _, fields, _ in notify.snapshot()[index:]),
               5, what="STATUS= to say so")


def test_every_thread_leaves_the_signals_to_the_event_loop(daemons, notify, nats_server):
    """SIGTERM, SIGINT and SIGHUP go to the loop's signalfd. A thread of
    nats.c's (started early, while the config is read) that did not block
    them could take one, and its default action would kill the daemon."""
    leaf = daemons(leaf_config(nats_server), notify=notify).start()
    notify.wait_for("READY", "1", timeout=10)
    wanted = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    tasks = list(Path(f"/proc/{leaf.proc.pid}/task").iterdir())
    assert len(tasks) >= 5  # the loop's, and nats.c's timers, callbacks, reader, flusher...
    for task in tasks:
        status = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines() if ":\t" in line)
        blocked = {s for s in wanted if int(status["SigBlk"], 16) >> (s - 1) & 1}
        assert blocked == wanted, f"thread {status['Name']} ({task.name}) takes {wanted - blocked}"
    assert leaf.stop() == 0


def test_sigterm_during_startup_exits_cleanly(daemons, notify):
    leaf = daemons(leaf_config(), notify=notify).start()  # NATS unreachable: stays "connecting"
    notify.wait_for("STATUS", timeout=5)
    leaf.signal(signal.SIGTERM)
    assert leaf.wait(6) == 0
    assert "STOPPING" in notify.keys()
    assert "READY" not in notify.keys()


def test_sigterm_at_any_moment_of_the_start_exits_0_within_3_s(daemons, notify, nats_server):
    # From the first datagram on, nats.c may still be starting on its own
    # thread, then the connection is made, subscribed and flushed: a signal
    # lands in each of these moments across the delays.
    for delay in (0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.013, 0.021, 0.034):
        after = len(notify.snapshot())
        leaf = daemons(leaf_config(nats_server), notify=notify).start()
        notify.wait_for("STATUS", after=after)
        time.sleep(delay)
        leaf.signal(signal.SIGTERM)
        begin = time.monotonic()
        assert leaf.wait(3) == 0, f"SIGTERM {delay * 1000:g} ms after the first STATUS"
        assert time.monotonic() - begin < 3
        assert "STOPPING" in [k for _, fields, _ in notify.snapshot()[after:] for k in fields]


def test_sigint_stops_like_sigterm(daemons, notify):
    leaf = daemons(started_config(), notify=notify).start()
    notify.wait_for("READY", "1")
    leaf.signal(signal.SIGINT)
    assert leaf.wait(5) == 0
    assert "STOPPING" in notify.keys()


def test_sighup_before_ready_does_not_announce_a_reload(daemons, notify):
    leaf = daemons(leaf_config(), notify=notify).start()  # waits for NATS, not ready
    notify.wait_for("STATUS")
    leaf.signal(signal.SIGHUP)
    leaf.wait_for_log("configuration reloaded")
    keys = notify.keys()
    assert "RELOADING" not in keys and "READY" not in keys
    assert leaf.stop() == 0


def test_bad_config_at_start_exits_78_without_ready(daemons, notify):
    leaf = daemons("nats:\n  servers: []\n", notify=notify).start()
    assert leaf.wait(5) == 78
    assert "READY" not in notify.keys()
    assert "nats.servers: must list at least 1 item" in leaf.output()


def test_log_level_from_config_command_line_and_reload(daemons, notify, nats_server):
    quiet = daemons(leaf_config(nats_server), notify=notify, args=["--log-level", "warn"]).start()
    notify.wait_for("READY", "1", timeout=10)
    time.sleep(0.5)
    assert "ready" not in quiet.output() and "heartbeat" not in quiet.output()  # info and debug are below warn
    quiet.stop()

    leaf = daemons(leaf_config(nats_server), notify=notify).start()
    wait_until(lambda: "ready" in leaf.output(), what="info lines at the default level")
    time.sleep(0.5)
    assert "heartbeat 1 sent" not in leaf.output()
    leaf.write_config(leaf_config(nats_server, log={"level": "debug"}))
    leaf.signal(signal.SIGHUP)
    leaf.wait_for_log(r"debug heartbeat \d+ sent on cim.leaf.leaf-01.heartbeat")
    assert leaf.stop() == 0

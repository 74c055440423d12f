"""watch.units where no systemd can answer: a system bus without systemd on
it, and no system bus at all. The units check says `unknown` with the
reason, the daemon keeps trying, and nothing else is held up. (Watching real
units needs real systemd: tests/system/test_units.py.)"""
import signal

from harness import leaf_config, wait_until
from nats_client import Client
from payloads import valid

WATCH = {"units": ["nats.service", "cim-*.service"], "critical": ["nats.service"]}


def units_check(server):
    with Client(server.port) as client:
        return valid("health", client.request("cim.leaf.leaf-01.health").data)


def test_a_system_bus_without_systemd_is_unknown_and_stalls_nothing(daemons, notify, session_bus, nats_server):
    # The test's bus stands in for the system bus: sd-bus takes its address
    # from DBUS_SYSTEM_BUS_ADDRESS, and no systemd is on it.
    leaf = daemons(leaf_config(nats_server, watch=WATCH), notify=notify,
                   env={"DBUS_SYSTEM_BUS_ADDRESS": session_bus.address}).start()
    notify.wait_for("READY", "1", timeout=10)
    health = wait_until(lambda: (h := units_check(nats_server))["checks"]["units"]["reason"] and h, 10,
                        what="the units check to say why")
    units = health["checks"]["units"]
    assert units["status"] == "unknown" and units["watching"] is False, units
    assert units["reason"].startswith("systemd does not answer on the system bus"), units
    # Named units are listed before systemd has said anything about them.
    assert [unit["unit"] for unit in units["units"]] == ["nats.service"], units
    assert units["units"][0]["load_state"] == "stub" and units["units"][0]["critical"] is True, units
    assert health["status"] == "degraded"
    assert health["checks"]["nats"]["connected"] is True
    wait_until(lambda: any("units unknown (systemd does not answer on the system bus" in fields.get("STATUS", "")
                           for _, fields, _ in notify.snapshot()), 5, what="STATUS= to say so")
    leaf.wait_for_log(r"cannot watch units: systemd does not answer on the system bus")
    assert leaf.output().count("cannot watch units") == 1  # logged once while the reason stays


def test_no_system_bus_is_unknown_with_the_reason_and_tried_again(daemons, notify, nats_server, tmp_path):
    leaf = daemons(leaf_config(nats_server, watch=WATCH), notify=notify,
                   env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}).start()
    notify.wait_for("READY", "1", timeout=10)
    health = wait_until(lambda: (h := units_check(nats_server))["checks"]["units"]["reason"] and h, 10,
                        what="the units check to say why")
    assert health["checks"]["units"]["reason"].startswith("cannot connect to the system bus"), health
    assert health["status"] == "degraded"
    # Not watching units is no reason to stop: a reload that drops them makes health ok.
    leaf.write_config(leaf_config(nats_server))
    leaf.signal(signal.SIGHUP)
    wait_until(lambda: units_check(nats_server)["status"] == "ok", 10, what="health ok without watch.units")
    assert "units" not in units_check(nats_server)["checks"]

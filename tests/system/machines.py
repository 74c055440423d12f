"""Booting a Debian container with cim-leaf installed as `meson install`
lays it out: shared by the fixtures in conftest.py and by the benchmarks
that need real systemd (bench/units_idle.py)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from container import Container, Machine, remove_stale_runs
from rootfs import ensure_rootfs, rootfs_packages

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
SCENARIOS = REPO / "vm-tests/scenarios"
BUILDDIR = Path(os.environ.get("CIM_LEAF_BUILDDIR", REPO / "build"))
BINARY = BUILDDIR / "daemon/cim-leaf"
# Debian's name for the unit NixOS calls nats.service.
NATS_UNIT = "nats-server.service"
TOOLS = ["debootstrap", "systemd-nspawn", "nsenter", "mount", "meson"]


def missing_prerequisites():
    if os.geteuid() != 0:
        return "system tests need root (debootstrap, mounts, systemd-nspawn)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install $(cat tests/apt-packages.txt)"
    return None


def load_scenario(name):
    """Run lib.py + <name>.py as one script, exactly as the NixOS testScript does."""
    namespace = {"__name__": f"scenario_{name}"}
    source = (SCENARIOS / "lib.py").read_text() + (SCENARIOS / f"{name}.py").read_text()
    exec(compile(source, str(SCENARIOS / f"{name}.py"), "exec"), namespace)
    return namespace


def config_yaml(node, interval="5s"):
    return (f"node:\n  id: {node}\n  labels:\n    suite: system-test\n"
            f"nats:\n  servers: [\"nats://127.0.0.1:4222\"]\n"
            f"heartbeat:\n  interval: {interval}\n")


def prepare_rootfs(log=lambda msg: print(msg, file=sys.stderr)):
    """The cached rootfs for the built daemon, after removing what killed runs left."""
    remove_stale_runs()
    return ensure_rootfs(rootfs_packages(BINARY), log=log)


def meson_install(destdir):
    """`meson install` of BUILDDIR into destdir, which becomes the container's /
    (so 0755); None when the daemon is not built (the unit then comes from
    the source tree)."""
    if not BINARY.exists():
        return None
    destdir.chmod(0o755)
    subprocess.run(["meson", "install", "-C", str(BUILDDIR), "--no-rebuild", "--quiet", "--destdir", str(destdir)],
                   check=True, stdout=subprocess.DEVNULL)
    return destdir


def find(tree, name):
    return sorted(p.relative_to(tree) for p in tree.rglob(name)) if tree else []


def install_daemon(root, tree):
    """Lay the install tree into the container and make it a working install."""
    notes = []
    if tree:
        subprocess.run(["cp", "-a", f"{tree}/.", str(root)], check=True)
    if not find(root / "usr/local/lib/systemd/system", "cim-leaf.service") + \
            find(root / "usr/lib/systemd/system", "cim-leaf.service"):
        notes.append("unit not installed by meson: using daemon/systemd/cim-leaf.service.in")
        unit = (REPO / "daemon/systemd/cim-leaf.service.in").read_text().replace("@bindir@", "/usr/local/bin")
        (root / "etc/systemd/system/cim-leaf.service").write_text(unit)
    if not find(root / "usr/local/lib/sysusers.d", "cim-leaf.conf") + find(root / "usr/lib/sysusers.d", "cim-leaf.conf"):
        notes.append("sysusers.d file not installed by meson: using daemon/systemd/cim-leaf.sysusers")
        (root / "etc/sysusers.d").mkdir(exist_ok=True)
        shutil.copy(REPO / "daemon/systemd/cim-leaf.sysusers", root / "etc/sysusers.d/cim-leaf.conf")
    # The system bus reads only /usr/share and /etc; with meson's default
    # prefix /usr/local the policy needs the link an admin would add.
    for policy in find(root / "usr/local/share/dbus-1/system.d", "*.conf"):
        notes.append("D-Bus policy under /usr/local: linked into /etc/dbus-1/system.d")
        (root / "etc/dbus-1/system.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/dbus-1/system.d" / policy.name).symlink_to(f"/usr/local/share/dbus-1/system.d/{policy}")
    subprocess.run(["systemd-sysusers", f"--root={root}"], check=True)
    # The natscli stand-in and the protocol client it imports, side by side.
    shim_dir = root / "usr/local/lib/cim-leaf-tests"
    shim_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "nats_shim.py", shim_dir / "nats_shim.py")
    shutil.copy(REPO / "tests/lib/nats_client.py", shim_dir / "nats_client.py")
    (shim_dir / "nats_shim.py").chmod(0o755)
    (root / "usr/local/bin/nats").unlink(missing_ok=True)
    (root / "usr/local/bin/nats").symlink_to("/usr/local/lib/cim-leaf-tests/nats_shim.py")
    return notes


# Where Debian's nats-server keeps a JetStream store: its unit has
# PrivateTmp=, so the default store under /tmp would go with each stop.
JETSTREAM_STORE = "/var/lib/nats-server"


def configure_nats_server(root, settings, service=""):
    """Settings added to Debian's /etc/nats-server.conf (host 127.0.0.1, port
    4222) as an admin adds them, and a drop-in with the StateDirectory= for a
    JetStream store in JETSTREAM_STORE and the `service` lines."""
    with open(root / "etc/nats-server.conf", "a") as conf:
        conf.write(settings)
    dropin = root / "etc/systemd/system/nats-server.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "local.conf").write_text(f"[Service]\nStateDirectory=nats-server\nStateDirectoryMode=0750\n{service}")



def boot(name, rootfs, install_tree, network_args=("--private-network",), nats_server=True, nats_settings=None,
         nats_service="", leaf=True, config=None, hosts="", files=None, started=None):
    """A booted container on rootfs with install_tree (meson_install) laid in:
    -> Machine. `started(container)` is called as soon as the Container
    exists, so that the caller can stop it whatever happens next.

    `nats_settings` and `nats_service` go to configure_nats_server,
    `config` (YAML) to /etc/cim-leaf/config.yaml, `hosts` to /etc/hosts;
    `files` maps absolute paths to a (source file, mode) to copy there."""
    container = Container(name, rootfs, network_args)
    if started:
        started(container)
    root = container.root
    for path, (source, mode) in (files or {}).items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / path.lstrip("/"))
        (root / path.lstrip("/")).chmod(mode)
    for note in install_daemon(root, install_tree):
        print(f"{name}: note: {note}", file=sys.stderr)
    (root / "etc/cim-leaf").mkdir(exist_ok=True)
    (root / "etc/cim-leaf/config.yaml").write_text(config or config_yaml(name))
    with open(root / "etc/hosts", "a") as etc_hosts:
        etc_hosts.write(hosts)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    if nats_server:
        # What the NixOS module does with nats.service, as an admin's drop-in.
        dropin = root / "etc/systemd/system/cim-leaf.service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "nats.conf").write_text(f"[Unit]\nAfter={NATS_UNIT}\n")
        if nats_settings:
            configure_nats_server(root, nats_settings, nats_service)
    else:
        (wants / NATS_UNIT).unlink()
    if leaf and BINARY.exists():  # enabled, as services.cim-leaf.enable does on NixOS
        (wants / "cim-leaf.service").symlink_to("/usr/local/lib/systemd/system/cim-leaf.service")
    container.boot()
    return Machine(container)

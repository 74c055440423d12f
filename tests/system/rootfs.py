"""A Debian 12 root file system for the system tests, built with debootstrap
and cached under CACHE_DIR/<hash of what went into it>, so that it is rebuilt
only when the package list (or this recipe) changes."""
import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
CACHE_DIR = Path(os.environ.get("CIM_LEAF_SYSTEST_CACHE", "/var/cache/cim-leaf-systest"))
# Bump when the steps in _customize change, so that old caches are not reused.
RECIPE = "3"

BASE_PACKAGES = [
    "systemd", "dbus", "nats-server", "python3", "procps",
    # Runtime libraries of cim-leaf; rootfs_packages() adds whatever the
    # built binary links against on top of these.
    "libnats3.4", "libsdbus-c++1", "libspdlog1.10", "libyaml-cpp0.7", "libsystemd0", "libfmt9",
]

# Units that only slow the boot down or wait for a terminal nobody attaches.
MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "systemd-pstore.service", "console-getty.service",
    "getty@tty1.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
]


def binary_packages(binary):
    """Debian packages that provide the shared libraries `binary` links against."""
    if not binary or not Path(binary).exists():
        return []
    libs = re.findall(r"=> (/\S+)", subprocess.run(["ldd", binary], capture_output=True, text=True).stdout)
    packages = set()
    for lib in libs:
        found = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if found.returncode != 0:  # dpkg knows /usr/lib paths, ldd may print /lib ones
            found = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        for line in found.stdout.splitlines():
            packages.update(p.split(":")[0].strip() for p in line.split(": ")[0].split(","))
    return sorted(packages)


def rootfs_packages(binary=None):
    return sorted(set(BASE_PACKAGES) | set(binary_packages(binary)))


def debian_mirror():
    """The Debian mirror this host's apt uses (deb822 or one-line sources)."""
    texts = [Path(p).read_text() for p in
             ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))] if Path(p).is_file()]
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):  # deb822: URIs + Suites
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if uris and re.search(rf"^Suites:.*\b{SUITE}\b(?!-)", stanza, re.M) and "security" not in uris.group(1):
                return uris.group(1)
        m = re.search(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.M)
        if m and "security" not in m.group(1):
            return m.group(1)
    return "http://deb.debian.org/debian"


def _customize(root):
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # A fresh machine id at each boot, like a newly installed host.
    (root / "etc/machine-id").write_text("")
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True)


def ensure_rootfs(packages, log=print):
    """Path of a cached root file system with `packages`, building it if needed."""
    key = hashlib.sha256("\n".join([SUITE, RECIPE, *packages]).encode()).hexdigest()[:16]
    target = CACHE_DIR / key
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same tree
        if (target / ".complete").exists():
            return target
        building = CACHE_DIR / f".build-{key}"
        shutil.rmtree(building, ignore_errors=True)
        mirror = debian_mirror()
        log(f"building Debian {SUITE} rootfs {target} from {mirror} with {' '.join(packages)}")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                        SUITE, str(building), mirror], check=True, stdout=subprocess.DEVNULL)
        _customize(building)
        (building / ".complete").write_text("\n".join(packages) + "\n")
        building.rename(target)
        # Only the current tree is worth its 300 MB.
        for old in CACHE_DIR.iterdir():
            if old != target and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return target

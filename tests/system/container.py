"""Boot a root file system with systemd-nspawn and drive it like a NixOS test
VM: Machine implements the part of the NixOS test driver's Machine API that
vm-tests/scenarios use, on top of nsenter."""
import atexit
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_PREFIX = "cim-leaf-systest-"


def remove_stale_runs():
    """Unmount and delete run dirs whose pytest died without teardown (SIGKILL)."""
    for run_dir in Path("/var/tmp").glob(f"{RUN_PREFIX}*"):
        try:
            owner = int((run_dir / "owner").read_text())
            os.kill(owner, 0)
            continue  # a run in progress
        except ProcessLookupError:
            pass
        except (FileNotFoundError, ValueError):
            pass
        subprocess.run(["umount", "--lazy", str(run_dir / "root")], stderr=subprocess.DEVNULL)
        shutil.rmtree(run_dir, ignore_errors=True)


class Container:
    """One booted container on a per-run overlay (or copy) of a cached rootfs.

    Use prepare() to write files into the tree before boot(); stop() is
    idempotent and also registered with atexit, so nothing outlives the run.
    """

    def __init__(self, name, lower, network_args=("--private-network",)):
        self.name = name
        self.network_args = list(network_args)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{name}-", dir="/var/tmp"))
        (self.run_dir / "owner").write_text(str(os.getpid()))
        self.root = self.run_dir / "root"
        self.mounted = False
        self.nspawn = None
        self.init_pid = None
        atexit.register(self.stop)
        self._make_root(lower)

    def _make_root(self, lower):
        """An overlay costs milliseconds where copying 300 MB costs seconds."""
        upper, work = self.run_dir / "upper", self.run_dir / "work"
        for d in (upper, work, self.root):
            d.mkdir()
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)],
                          stderr=subprocess.DEVNULL).returncode == 0:
            self.mounted = True
        else:  # e.g. the cache itself lives on overlayfs
            self.root.rmdir()
            subprocess.run(["cp", "-a", "--reflink=auto", str(lower), str(self.root)], check=True)

    def boot(self, timeout=60):
        log = open(self.run_dir / "console.log", "wb")
        cmd = ["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--console=read-only",
               f"--machine={self.name}", "-D", str(self.root), *self.network_args, "--boot"]
        # A session of its own: a Ctrl-C at the terminal reaches pytest, and
        # teardown decides what happens to the container.
        self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.init_pid is None:
            self.init_pid = self._find_init()
            self._check_alive(deadline)
        # Wait until systemd answers and the boot transaction is done
        # (polling: `is-system-running --wait` can miss the moment and hang).
        while True:
            state = self.run("systemctl is-system-running", timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                return
            self._check_alive(deadline)

    def _find_init(self):
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        try:
            pids = children.read_text().split()
        except FileNotFoundError:
            return None
        # nspawn's child is the container's PID 1 once it has exec'd systemd.
        for pid in pids:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return int(pid)
        return None

    def _check_alive(self, deadline):
        if self.nspawn.poll() is not None or time.monotonic() > deadline:
            console = (self.run_dir / "console.log").read_text(errors="replace")[-2000:]
            jobs = ""
            if self.init_pid and self.nspawn.poll() is None:
                jobs = self.run("systemctl list-jobs --no-pager; journalctl -b -n 40 --no-pager", timeout=10).stdout
            raise RuntimeError(f"container {self.name} did not boot:\n{console}\n{jobs}")
        time.sleep(0.1)

    def run(self, command, timeout=900):
        """Run a bash command inside the container: all its namespaces, a clean environment."""
        argv = ["nsenter", "-t", str(self.init_pid), "-a", "env", "-i", f"PATH={CONTAINER_PATH}",
                "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "HOME=/root", "TERM=dumb",
                "bash", "-c", f"set -euo pipefail; {command}"]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def stop(self):
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.nspawn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # SIGKILL to a PID namespace's init ends every process in it.
                for pid in (self.init_pid, self.nspawn.pid):
                    if pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                try:
                    os.killpg(self.nspawn.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.nspawn.wait()
        if self.mounted:
            if subprocess.run(["umount", str(self.root)]).returncode != 0:
                subprocess.run(["umount", "--lazy", str(self.root)])
            self.mounted = False
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)


class Machine:
    """The NixOS test driver's Machine API (the part the scenarios use), with
    its semantics: succeed() raises on a non-zero exit and returns stdout,
    commands run under `set -euo pipefail`, waits poll once a second."""

    def __init__(self, container):
        self.container = container
        self.name = container.name

    def log(self, msg):
        print(f"{self.name}: {msg}", file=sys.stderr, flush=True)

    def start(self):
        """The container is booted by its fixture already."""

    def execute(self, command, check_return=True, check_output=True, timeout=900):
        self.log(f"$ {command}")
        try:
            r = self.container.run(command, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Exception(f"command `{command}` timed out after {timeout}s")
        if r.stderr:
            sys.stderr.write(r.stderr)
        return r.returncode, r.stdout

    def succeed(self, *commands, timeout=None):
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout or 900)
            if status != 0:
                self.log(f"output: {out}")
                raise Exception(f"command `{command}` failed (exit code {status})")
            output += out
        return output

    def fail(self, *commands, timeout=None):
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout or 900)
            if status == 0:
                raise Exception(f"command `{command}` unexpectedly succeeded")
            output += out
        return output

    def _retry(self, what, fn, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if fn():
                return
            if time.monotonic() > deadline:
                raise Exception(f"timed out after {timeout}s: {what}")
            time.sleep(1)

    def wait_until_succeeds(self, command, timeout=900):
        output = ""

        def check():
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status == 0
        self._retry(f"`{command}` kept failing", check, timeout)
        return output

    def wait_until_fails(self, command, timeout=900):
        output = ""

        def check():
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0
        self._retry(f"`{command}` kept succeeding", check, timeout)
        return output

    def systemctl(self, q, user=None):
        if user is not None:
            q = f"--user -M {shlex.quote(user)}@ {q}"
        return self.execute(f"systemctl {q}")

    def get_unit_info(self, unit, user=None):
        status, out = self.systemctl(f"--no-pager show {shlex.quote(unit)}", user)
        if status != 0:
            raise Exception(f'retrieving systemctl info for unit "{unit}" failed with exit code {status}')
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for_unit(self, unit, user=None, timeout=900):
        """Like NixOS: wait until active; give up at once if it failed or
        is inactive with nothing queued that could start it."""
        def check():
            state = self.get_unit_info(unit, user)["ActiveState"]
            if state == "failed":
                raise Exception(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs and self.get_unit_info(unit, user)["ActiveState"] == state:
                    raise Exception(f'unit "{unit}" is inactive and there are no pending jobs')
            return state == "active"
        self._retry(f'unit "{unit}" did not become active', check, timeout)

    def wait_for_open_port(self, port, addr="localhost", timeout=900):
        # bash's /dev/tcp: no netcat needed in the container.
        self.wait_until_succeeds(f"timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port}'", timeout)

    def wait_for_closed_port(self, port, addr="localhost", timeout=900):
        self.wait_until_fails(f"timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port}'", timeout)

"""What the benchmarks share: a nats-server that can be stopped and started
again on its port, a command run under a private NOTIFY_SOCKET, what a
process costs (CPU, context switches, memory), the paired statistics that
the tables print and the lines above them."""
import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A nats-server on a fixed loopback port that can be killed and restarted;
    with `store`, JetStream keeps its streams there (-js -sd) across restarts."""

    def __init__(self, port, log, store=None):
        self.port, self.log, self.store, self.proc = port, log, store, None
        self.url = f"nats://127.0.0.1:{port}"

    def start(self):
        # Another server on the port would answer in this one's place.
        if self.listening():
            sys.exit(f"port {self.port} is taken (a nats-server still running?)")
        jetstream = ["-js", "-sd", self.store] if self.store else []
        self.proc = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-l", self.log, *jetstream],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.listening():
                return
            time.sleep(0.005)
        self.proc.kill()
        sys.exit(f"nats-server did not start on port {self.port}, see {self.log}")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.1).close()
            return True
        except OSError:
            return False

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        """A clean shutdown: JetStream closes its store."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


class Notified:
    """Runs a command under a private NOTIFY_SOCKET, like systemd Type=notify."""

    def __init__(self, cmd, tmp, log, env=None, ready_timeout=10):
        self.path = os.path.join(tmp, f"notify-{os.getpid()}-{time.monotonic_ns()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self.readies = 0  # READY=1 datagrams: the first, then one after each reload
        self.changed = threading.Condition()
        self.ready = threading.Event()
        self.logf = open(log, "w")
        env = dict(os.environ, **(env or {}), NOTIFY_SOCKET=self.path)
        t0 = time.monotonic_ns()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        # Keep reading for the whole run so later STATUS=/WATCHDOG= datagrams
        # never hit a dead socket.
        threading.Thread(target=self._drain, daemon=True).start()
        self.ready_ms = None  # start to READY=1, if it came within ready_timeout
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.ready.wait(0.01):
                self.ready_ms = (self.ready_at - t0) / 1e6
                break

    def _drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            now = time.monotonic_ns()
            self.messages.append(data.decode(errors="replace"))
            if b"READY=1" in data.split(b"\n"):
                with self.changed:
                    self.readies += 1
                    self.changed.notify_all()
                if not self.ready.is_set():
                    self.ready_at = now
                    self.ready.set()

    def reload(self, timeout=10):
        """SIGHUP, and wait for the READY=1 that ends that reload."""
        with self.changed:
            before = self.readies
            self.proc.send_signal(signal.SIGHUP)
            if not self.changed.wait_for(lambda: self.readies > before, timeout):
                raise RuntimeError(f"no READY=1 within {timeout} s of SIGHUP")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        os.unlink(self.path)
        self.logf.close()


def threads_sample(pid, proc="/proc"):
    """(CPU ns, voluntary, involuntary context switches), summed over all
    threads of pid as seen in the procfs at `proc`.

    schedstat gives run time in ns, much finer than /proc/PID/stat's ticks;
    a blocked thread that is woken up counts one voluntary switch.
    """
    cpu = voluntary = involuntary = 0
    for tid in os.listdir(f"{proc}/{pid}/task"):
        try:
            with open(f"{proc}/{pid}/task/{tid}/schedstat") as f:
                cpu += int(f.read().split()[0])
            with open(f"{proc}/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        except FileNotFoundError:
            pass  # thread ended between listdir and open
    return cpu, voluntary, involuntary


def memory_kib(pid):
    """(Rss, Pss) in KiB: Pss shares each page among the processes that map it."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def stop_all(notified):
    """Notified.stop for many: SIGTERM to all first, so that they end together
    rather than one after another."""
    for n in notified:
        if n.proc.poll() is None:
            n.proc.terminate()
    for n in notified:
        n.stop()


def nats_server_version():
    return subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip()


def conditions():
    """When and on what: the date, the 1-minute load average, nats-server's version."""
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "load_average": os.getloadavg()[0],
            "nats_server": nats_server_version()}


def print_conditions(start, end, rounds):
    """The line above a table, from conditions() at the start and at the end of the run."""
    print(f"{start['date']}; {start['nats_server']}; {rounds} rounds; load average (1 min) "
          f"{start['load_average']:.2f} at the start, {end['load_average']:.2f} at the end")


def executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def file_system(path):
    """Its type as stat -f names it ("ext2/ext3", "tmpfs"): fsync costs differ by far."""
    kind = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True).stdout.strip()
    return kind or "unknown file system"


def spread(values):
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def paired(a, b):
    """Per round a / b (both measured in that round), then (median, min, max)."""
    return spread([x / y for x, y in zip(a, b)])


def print_table(lines):
    """Left-aligned first column, the others right-aligned; a rule under the head."""
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for i, r in enumerate(lines):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))

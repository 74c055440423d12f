#!/usr/bin/env python3
"""Measures bare_responder and the cim-leaf daemon the same way and prints
a table of ratios. Called by bench/run.sh, which builds the C programs.

Everything runs on 127.0.0.1 against nats-servers started here; every loop
is bounded in count and time. Targets are printed, never asserted: timings
on a shared 2-core machine are too noisy to fail a build on.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A nats-server on a fixed loopback port that can be killed and restarted."""

    def __init__(self, port, log):
        self.port, self.log, self.proc = port, log, None
        self.url = f"nats://127.0.0.1:{port}"

    def start(self):
        self.proc = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-l", self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.005)
        self.proc.kill()
        sys.exit(f"nats-server did not start on port {self.port}, see {self.log}")

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Notified:
    """Runs a command under a private NOTIFY_SOCKET, like systemd Type=notify."""

    def __init__(self, cmd, tmp, log):
        self.path = os.path.join(tmp, f"notify-{os.getpid()}-{time.monotonic_ns()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self.ready = threading.Event()
        self.logf = open(log, "w")
        env = dict(os.environ, NOTIFY_SOCKET=self.path)
        t0 = time.monotonic_ns()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        # Keep reading for the whole run so later STATUS=/WATCHDOG= datagrams
        # never hit a dead socket.
        threading.Thread(target=self._drain, daemon=True).start()
        self.ready_ms = None
        deadline = time.monotonic() + 10
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
            if b"READY=1" in data.split(b"\n") and not self.ready.is_set():
                self.ready_at = now
                self.ready.set()

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


def proc_sample(pid):
    """(CPU ns, voluntary context switches), summed over all threads.

    schedstat gives run time in ns, much finer than /proc/PID/stat's ticks;
    a blocked thread that is woken up counts one voluntary switch.
    """
    cpu = vcs = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu += int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vcs += int(line.split()[1])
        except FileNotFoundError:
            pass  # thread ended between listdir and open
    return cpu, vcs


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_json(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return json.loads(r.stdout)


def measure(name, cmd, subject, server, args, tmp):
    """All metrics for one responder (started by cmd) answering subject."""
    log = os.path.join(tmp, f"{name}.log")
    res = {}
    p = Notified(cmd, tmp, log)
    try:
        if p.ready_ms is None:
            tail = open(log).read()[-2000:]
            state = f"exited with {p.proc.returncode}" if p.proc.poll() is not None else "no READY=1 in 10 s"
            raise RuntimeError(f"{name}: {state}; notify: {p.messages[-5:]}; log tail:\n{tail}")
        res["ready_ms"] = p.ready_ms
        pid = p.proc.pid

        time.sleep(args.settle)
        res["rss_mib"] = rss_mib(pid)
        cpu0, vcs0 = proc_sample(pid)
        time.sleep(args.idle)
        cpu1, vcs1 = proc_sample(pid)
        res["idle_cpu_ms_per_s"] = (cpu1 - cpu0) / 1e6 / args.idle
        res["wakeups_per_s"] = (vcs1 - vcs0) / args.idle

        bench = [bin_path(args, "health_bench"), "-n", str(args.n), "-k", str(args.k), "-t", "60",
                 server.url, subject]
        runs = [run_json(bench, 70) for _ in range(args.repeat)]
        best = sorted(runs, key=lambda r: r["throughput"])[len(runs) // 2]  # the median run
        res.update(throughput=best["throughput"], p50_us=best["p50_us"], p99_us=best["p99_us"])

        server.kill()
        t0 = time.time_ns()
        server.start()
        probe = [bin_path(args, "health_bench"), "-p", "-s", str(t0), "-t", "20", server.url, subject]
        res["reconnect_ms"] = run_json(probe, 30)["answered_ms"]
        if p.proc.poll() is not None:
            raise RuntimeError(f"{name} exited during the run, see {log}")
    finally:
        p.stop()
    return res


def bin_path(args, prog):
    return os.path.join(args.bin_dir, prog)


DAEMON_CONFIG = """\
node: {{id: bench}}
nats:
  servers: [{url}]
  reconnect: {{wait: 250ms, jitter: 100ms}}
dbus: {{bus: none}}
heartbeat: {{interval: 5s}}
log: {{level: warn}}
"""

# (key, label, format, target description, check of ratio or daemon value)
ROWS = [
    ("throughput", "health throughput (req/s)", "{:.0f}", ">= 0.9x bare", lambda b, d: d >= 0.9 * b),
    ("p50_us", "health latency p50 (us)", "{:.0f}", "", None),
    ("p99_us", "health latency p99 (us)", "{:.0f}", "<= 1.2x bare", lambda b, d: d <= 1.2 * b),
    ("ready_ms", "start to READY=1 (ms)", "{:.1f}", "< 50 ms", lambda b, d: d < 50),
    ("rss_mib", "VmRSS after idle (MiB)", "{:.1f}", "< 12 MiB", lambda b, d: d < 12),
    ("idle_cpu_ms_per_s", "idle CPU (ms/s)", "{:.3f}", "", None),
    ("wakeups_per_s", "idle wakeups (vol. ctx sw/s)", "{:.1f}", "", None),
    ("reconnect_ms", "server restart to answer (ms)", "{:.0f}", "", None),
]


def table(bare, daemon):
    head = ("metric", "bare", "daemon", "ratio", "target", "verdict")
    lines = [head]
    for key, label, fmt, target, ok in ROWS:
        b, d = bare.get(key), (daemon or {}).get(key)
        ratio = f"{d / b:.2f}" if b and d is not None else "-"
        verdict = ("met" if ok(b, d) else "MISSED") if ok and d is not None else ""
        lines.append((label, fmt.format(b) if b is not None else "-",
                      fmt.format(d) if d is not None else "-", ratio, target, verdict))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    for i, r in enumerate(lines):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin-dir", required=True, help="where health_bench and bare_responder are")
    ap.add_argument("--daemon", required=True, help="cim-leaf binary")
    ap.add_argument("-n", type=int, default=20000, help="measured requests per run")
    ap.add_argument("-k", type=int, default=8, help="requests in flight")
    ap.add_argument("--repeat", type=int, default=3, help="runs per responder; the median is shown")
    ap.add_argument("--settle", type=float, default=5, help="idle seconds before reading VmRSS")
    ap.add_argument("--idle", type=float, default=10, help="idle seconds for CPU and wakeups")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cim-leaf-bench-") as tmp:
        results = {}
        print(f"health: {args.repeat} x {args.n} requests, {args.k} in flight; "
              f"idle: {args.settle:g} s settle + {args.idle:g} s sample", flush=True)

        server = NatsServer(free_port(), os.path.join(tmp, "nats-bare.log"))
        server.start()
        try:
            results["bare"] = measure("bare", [bin_path(args, "bare_responder"), server.url, "bench.bare.health"],
                                      "bench.bare.health", server, args, tmp)
        finally:
            server.kill()

        daemon_error = None
        if not (os.path.isfile(args.daemon) and os.access(args.daemon, os.X_OK)):
            daemon_error = (f"daemon binary not found at {args.daemon} "
                            "(build it, or set CIM_LEAF_BIN): only the bare column is measured")
        else:
            server = NatsServer(free_port(), os.path.join(tmp, "nats-daemon.log"))
            server.start()
            cfg = os.path.join(tmp, "config.yaml")
            with open(cfg, "w") as f:
                f.write(DAEMON_CONFIG.format(url=server.url))
            try:
                results["daemon"] = measure("daemon", [args.daemon, "--config", cfg],
                                            "cim.leaf.bench.health", server, args, tmp)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                daemon_error = f"daemon half failed: {e}"
            finally:
                server.kill()

        table(results["bare"], results.get("daemon"))
        if daemon_error:
            sys.stdout.flush()
            print(f"\n{daemon_error}", file=sys.stderr)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(results, daemon_error=daemon_error), f, indent=2)


if __name__ == "__main__":
    main()

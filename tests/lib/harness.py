"""Real components for integration tests: a nats-server on a free loopback
port, a private dbus-daemon, a notify socket the test owns (standing in for
systemd's), and the daemon itself."""
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("CIM_LEAF_BIN", ROOT / "build" / "daemon" / "cim-leaf"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(name):
    """The command prefix that runs a command as user `name` (none for None)."""
    if not name:
        return []
    entry = pwd.getpwnam(name)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]


def wait_until(predicate, timeout=5.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class NatsServer:
    """nats-server on 127.0.0.1; `extra` is appended to its config file.
    Every one still running when the test session ends is stopped then
    (conftest.py), even when its test failed before its own stop()."""

    running = set()

    def __init__(self, workdir, port=None, extra="", name="nats"):
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.name = name
        self.extra = extra
        self.proc = None
        self.url = f"nats://127.0.0.1:{self.port}"

    def _write_conf(self):
        conf = self.workdir / f"{self.name}.conf"
        conf.write_text(f"listen: 127.0.0.1:{self.port}\nserver_name: {self.name}\n{self.extra}\n")
        return conf

    def reconfigure(self, extra):
        """New settings in place, as `nats-server --signal reload` applies them."""
        self.extra = extra
        self._write_conf()
        self.proc.send_signal(signal.SIGHUP)

    def start(self):
        conf = self._write_conf()
        self.log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(["nats-server", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        NatsServer.running.add(self)
        wait_until(self._listening, 10, what=f"nats-server on port {self.port}")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"nats-server exited: {(self.workdir / f'{self.name}.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        NatsServer.running.discard(self)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        NatsServer.running.discard(self)


class DbusDaemon:
    """A private bus: session-style by default, or system-style with the
    shipped policy included (for the policy tests)."""

    def __init__(self, workdir, policy_dir=None):
        self.workdir = Path(workdir)
        self.socket = self.workdir / "bus.sock"
        self.address = f"unix:path={self.socket}"
        includes = f"<includedir>{policy_dir}</includedir>" if policy_dir else ""
        # Without a policy dir: a permissive bus like a session bus.
        policy = "" if policy_dir else "<policy context='default'><allow send_destination='*' eavesdrop='true'/><allow eavesdrop='true'/><allow own='*'/></policy>"
        self.conf = self.workdir / "bus.conf"
        self.conf.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{'system' if policy_dir else 'session'}</type>
  <listen>{self.address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  {policy}
  {includes}
</busconfig>
""")
        self.proc = None

    def start(self):
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(["dbus-daemon", "--config-file", str(self.conf), "--nofork", "--nopidfile"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The socket's file appears at bind(), before listen(): a bus paused
        # in between would refuse connections instead of hanging them.
        wait_until(self._listening, 10, what="dbus-daemon listening")
        os.chmod(self.socket, 0o777)
        return self

    def _listening(self):
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
                return True
            except OSError:
                return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            self.proc.wait(10)

    def pause(self):
        """A hung bus: the socket still accepts connections, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def busctl(self, *args, check=True, user=None, timeout=10):
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address, "DBUS_SESSION_BUS_ADDRESS": self.address}
        result = subprocess.run([*as_user(user), "busctl", "--system", *args], env=env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"busctl {' '.join(args)} failed: {result.stderr}")
        return result


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET;
    every datagram is kept, in order, with its arrival time."""

    def __init__(self, workdir):
        self.path = str(Path(workdir) / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # (monotonic time, {key: value}, raw text)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if self._closed:
                return
            text = data.decode()
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields, text))

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def wait_for(self, key, value=None, timeout=5.0, after=0):
        """The first message from index `after` on that has `key` (= `value`,
        or for which `value`, a function of the field, is true)."""
        def matches(field):
            return value is None or (value(field) if callable(value) else field == value)

        def find():
            for index, (_, fields, _) in enumerate(self.snapshot()[after:], after):
                if key in fields and matches(fields[key]):
                    return index, fields
            return None
        return wait_until(find, timeout, what=f"{key}={value or '*'} on the notify socket")

    def keys(self):
        """The protocol keys in order, without STATUS/MONOTONIC_USEC noise."""
        return [k for _, fields, _ in self.snapshot() for k in fields if k not in ("STATUS", "MONOTONIC_USEC")]

    def close(self):
        # Wakes the receiver and waits for it: a receiver still in recv() when
        # the descriptor is closed could take the next test's socket, which
        # may get the same number, and a datagram meant for it.
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()


class Daemon:
    """The real cim-leaf binary with a YAML config made from a dict."""

    def __init__(self, workdir, config, notify=None, env=None, args=(), name="leaf", user=None,
                 state_directory=None):
        self.workdir = Path(workdir)
        self.config_path = self.workdir / f"{name}.yaml"
        self.write_config(config)
        self.notify = notify
        self.env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                                      "WATCHDOG_PID", "JOURNAL_STREAM")}
        if notify:
            self.env["NOTIFY_SOCKET"] = notify.path
        # Its own event spool, as systemd's StateDirectory= gives each unit.
        self.state_directory = Path(state_directory or self.workdir / f"{name}-state")
        self.state_directory.mkdir(exist_ok=True)
        self.env["STATE_DIRECTORY"] = str(self.state_directory)
        self.env.update(env or {})
        self.args = list(args)
        # Run as another user (setpriv drops root): what it needs becomes reachable.
        self.prefix = as_user(user)
        if user:
            for directory in [self.workdir, *self.workdir.parents]:
                directory.chmod(directory.stat().st_mode | 0o711)
            self.config_path.chmod(0o644)
            entry = pwd.getpwnam(user)
            os.chown(self.state_directory, entry.pw_uid, entry.pw_gid)
            if notify:
                os.chmod(notify.path, 0o777)
        self.log_path = self.workdir / f"{name}.log"
        self.proc = None

    def write_config(self, config):
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        self.config_path.write_text(text)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.prefix, str(BIN), "--config", str(self.config_path), *self.args],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=10):
        return self.proc.wait(timeout)

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode if self.proc else None

    def output(self):
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern, timeout=5.0):
        return wait_until(lambda: re.search(pattern, self.output()), timeout, what=f"log line /{pattern}/")


def asan_runtime(binary=BIN):
    """The AddressSanitizer runtime `binary` links, or None."""
    linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found = re.search(r"\S*libasan\.so\S* => (\S+)", linked)
    return found.group(1) if found else None


def leaf_config(server=None, node_id="leaf-01", **sections):
    """A config dict: NATS at `server`, no D-Bus, fast heartbeats; `sections`
    are merged in (a dict per top-level key)."""
    config = {
        "node": {"id": node_id},
        "nats": {"servers": [server.url if server else "nats://127.0.0.1:1"],
                 "reconnect": {"wait": "100ms", "jitter": "50ms"}},
        "heartbeat": {"interval": "200ms"},
        "dbus": {"bus": "none"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def start_ready(daemons, notify, config, **options):
    """Starts a daemon and waits for its own READY=1: daemons started one
    after another share the notify socket, so only a datagram sent after
    this start counts."""
    after = len(notify.snapshot())
    leaf = daemons(config, notify=notify, **options).start()
    notify.wait_for("READY", "1", timeout=10, after=after)
    return leaf


def start_leaf(daemons, notify, server, node_id="leaf-01", **sections):
    """A leaf on `server` (see leaf_config), once READY."""
    return start_ready(daemons, notify, leaf_config(server, node_id=node_id, **sections))


def tls_server(directory):
    """A nats-server that requires TLS, with certificates made in `directory` (CA: directory/ca.pem)."""
    make_certificates(directory)
    return NatsServer(directory, extra=f'tls {{ cert_file: "{directory}/server.pem", '
                                       f'key_file: "{directory}/server.key" }}').start()


def make_certificates(directory, server_names="IP:127.0.0.1,DNS:localhost"):
    """A CA, a server certificate for `server_names` (subjectAltName) and a client certificate."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    for name, extension in (("server", f"subjectAltName={server_names}"),
                            ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

"""Misbehaving NATS servers for the fault tests: one that never speaks, one
that offers no TLS and records what a client sends, and proxies to a real
nats-server that answer the subscription flush late, note the pace of a
client's attempts, swallow everything like a network partition, or stop
reading what a client sends; and a slow disk under the event spool."""
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

from harness import asan_runtime


class Listener:
    """A TCP listener on 127.0.0.1; connected(client) runs for each client
    on the accepting thread."""

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.connections = 0

    def serve(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.connected(client)

    def connected(self, client):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class SilentServer(Listener):
    """Accepts TCP connections (the kernel does, into the backlog) and never
    sends a byte: to nats.c a server that hangs during connect."""

    def __init__(self):
        super().__init__()  # never accepts: the backlog holds the clients


class Proxy(Listener):
    """Forwards every client to `server` (a real nats-server); forward() may
    hold back, change or swallow what passes."""

    def __init__(self, server):
        super().__init__()
        self.server = server

    def connected(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.server.port))
        number = self.connections
        for source, sink, upward in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(target=self._pump, args=(source, sink, upward, number), daemon=True).start()

    def forward(self, data, sink, upward, number):
        sink.sendall(data)

    def _pump(self, source, sink, upward, number):
        try:
            while data := source.recv(65536):
                self.forward(data, sink, upward, number)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class LateFlushProxy(Proxy):
    """On the first `slow` connections, what the server sends after its first
    PONG (the answer to the connect handshake) is held back for `delay`
    seconds, so the flush that confirms the subscriptions times out."""

    def __init__(self, server, delay, slow=1):
        super().__init__(server)
        self.delay, self.slow = delay, slow
        self.tails = {}  # connection -> the last bytes, for a PONG split across reads; gone once past it
        self.serve()

    def connected(self, client):
        if self.connections <= self.slow:
            self.tails[self.connections] = b""
        super().connected(client)

    def forward(self, data, sink, upward, number):
        if not upward and number in self.tails:
            window = self.tails[number] + data
            at = window.find(b"PONG\r\n")
            if at < 0:
                self.tails[number] = window[-5:]
            else:
                cut = at + len(b"PONG\r\n") - len(self.tails.pop(number))
                sink.sendall(data[:cut])
                time.sleep(self.delay)
                data = data[cut:]
        sink.sendall(data)


class AcceptLog(Proxy):
    """Notes when each connection arrives, then cuts it (no server) or
    forwards it: the pace of a client's attempts."""

    def __init__(self, server=None):
        super().__init__(server)
        self.times = []
        self.serve()

    def connected(self, client):
        self.times.append(time.monotonic())
        if self.server is None:
            client.close()
        else:
            super().connected(client)

    def gaps(self):
        return [b - a for a, b in zip(self.times, self.times[1:])]


class Partition(Proxy):
    """Once cut(), forwards nothing more in either direction and resets
    nothing: a network partition as a client sees it, where writes succeed
    and no answer ever comes. heal() forwards again (what was swallowed stays
    lost, as on a real network)."""

    def __init__(self, server):
        super().__init__(server)
        self.cut_off = threading.Event()
        self.serve()

    def cut(self):
        self.cut_off.set()

    def heal(self):
        self.cut_off.clear()

    def forward(self, data, sink, upward, number):
        if not self.cut_off.is_set():
            sink.sendall(data)


class Deaf(Proxy):
    """Once deafen()ed, stops reading what the clients connected so far send,
    and resets nothing: a server that stops reading, as the client's writes
    see it (its window shuts, its sends block). What the server sends still
    reaches them. Later connections are heard."""

    def __init__(self, server):
        super().__init__(server)
        # Accepted sockets inherit it: little piles up before the window shuts.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.deaf_to = 0  # connections 1..deaf_to are no longer read
        self.serve()

    def deafen(self):
        self.deaf_to = self.connections

    def forward(self, data, sink, upward, number):
        sink.sendall(data)
        while upward and number <= self.deaf_to:
            time.sleep(0.05)  # this pump reads nothing more


class MidMessageCut(Proxy):
    """Once cut_next_message()ed, forwards only the first bytes of the next
    MSG the server sends, then ends that connection: a link lost in the
    middle of a message. Later connections pass."""

    def __init__(self, server):
        super().__init__(server)
        self.armed = False
        self.serve()

    def cut_next_message(self):
        self.armed = True

    def forward(self, data, sink, upward, number):
        at = data.find(b"MSG ")
        if self.armed and not upward and at >= 0:
            self.armed = False
            sink.sendall(data[:at + len("MSG cim.leaf")])
            raise OSError("cut in the middle of a message")  # the pump shuts both sides
        sink.sendall(data)


class PlaintextServer(Listener):
    """Speaks just enough NATS to look like a server without TLS: sends an
    INFO that offers none, then records every byte a client sends (a client
    that goes on in plain text sends CONNECT, with its password)."""

    def __init__(self):
        super().__init__(backlog=16)
        self.received = b""
        self._lock = threading.Lock()
        self.serve()

    def connected(self, client):
        threading.Thread(target=self._record, args=(client,), daemon=True).start()

    def _record(self, client):
        info = {"server_id": "FAKE", "server_name": "fake", "version": "2.9.0", "proto": 1, "go": "go1.19",
                "host": "127.0.0.1", "port": self.port, "headers": True, "max_payload": 1048576}
        try:
            client.sendall(b"INFO " + json.dumps(info).encode() + b"\r\n")
            client.settimeout(5)
            while data := client.recv(65536):
                with self._lock:
                    self.received += data
        except OSError:
            pass
        finally:
            client.close()


class SlowSpoolDisk:
    """Every fdatasync of the daemon's events.spool takes `delay_ms` longer
    (tests/lib/slow_fdatasync.c, preloaded), and while held (`held`, or
    hold()) does not return until release(); syncs() counts those done."""

    def __init__(self, workdir, binary, delay_ms=0, held=False):
        workdir = Path(workdir)
        library = workdir / "slow_fdatasync.so"
        source = Path(__file__).with_name("slow_fdatasync.c")
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source), "-ldl"], check=True)
        self.log = workdir / "fdatasyncs.log"
        # A sanitized daemon wants its runtime first.
        preload = [path for path in (asan_runtime(binary), str(library)) if path]
        self.env = {"LD_PRELOAD": " ".join(preload), "CIM_TEST_FDATASYNC_MS": str(delay_ms),
                    "CIM_TEST_FDATASYNC_LOG": str(self.log)}
        self.held = workdir / "fdatasync.hold"
        self.env["CIM_TEST_FDATASYNC_HOLD"] = str(self.held)
        if held:
            self.hold()

    def hold(self):
        self.held.touch()

    def release(self):
        self.held.unlink(missing_ok=True)

    def syncs(self):
        return self.log.read_text().count("\n") if self.log.exists() else 0

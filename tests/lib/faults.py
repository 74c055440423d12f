"""Misbehaving NATS servers for the fault tests: one that never speaks, a
proxy to a real nats-server that answers the subscription flush late, one
that offers no TLS and records what a client sends, and a listener that
notes the pace of a client's connection attempts."""
import json
import socket
import threading
import time


class SilentServer:
    """Accepts TCP connections (the kernel does, into the backlog) and never
    sends a byte: to nats.c a server that hangs during connect."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"nats://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()


class LateFlushProxy:
    """Forwards to `server`; on the first `slow` connections, what the server
    sends after its first PONG (the answer to the connect handshake) is held
    back for `delay` seconds, so the flush that confirms the subscriptions
    times out."""

    def __init__(self, server, delay, slow=1):
        self.server, self.delay, self.slow = server, delay, slow
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"nats://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.server.port))
            late = self.connections < self.slow
            self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, late), daemon=True).start()

    def _pump(self, source, sink, late):
        tail = b""  # the last bytes forwarded, for a PONG split across reads
        try:
            while data := source.recv(65536):
                if late:
                    window = tail + data
                    at = window.find(b"PONG\r\n")
                    if at >= 0:
                        cut = at + len(b"PONG\r\n") - len(tail)
                        sink.sendall(data[:cut])
                        time.sleep(self.delay)
                        data, late = data[cut:], False
                    else:
                        tail = window[-5:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class PlaintextServer:
    """Speaks just enough NATS to look like a server without TLS: sends an
    INFO that offers none, then records every byte a client sends (a client
    that goes on in plain text sends CONNECT, with its password)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
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

    def close(self):
        self.sock.close()


class AcceptLog:
    """A TCP listener that notes when each connection arrives, then cuts it
    or hands it to a real nats-server: the pace of a client's attempts."""

    def __init__(self, forward_to=None):
        self.forward_to = forward_to
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.times = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.times.append(time.monotonic())
            if self.forward_to is None:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.forward_to.port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def gaps(self):
        return [b - a for a, b in zip(self.times, self.times[1:])]

    def close(self):
        self.sock.close()


class Partition:
    """A proxy to a real nats-server that, once cut(), forwards nothing more
    in either direction and resets nothing: a network partition as a client
    sees it, where writes succeed and no answer ever comes. heal() forwards
    again (what was swallowed stays lost, as on a real network)."""

    def __init__(self, server):
        self.server = server
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.cut_off = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self):
        self.cut_off.set()

    def heal(self):
        self.cut_off.clear()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.server.port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                if not self.cut_off.is_set():
                    sink.sendall(data)
        except OSError:
            pass

    def close(self):
        self.sock.close()

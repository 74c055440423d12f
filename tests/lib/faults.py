"""Misbehaving NATS servers for the fault tests: one that never speaks, and
a proxy to a real nats-server that answers the subscription flush late."""
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

"""A small synchronous NATS client (text protocol over TCP, stdlib only) for
tests: subscribe, publish, request and scatter-gather, with headers. It is an
independent peer of the daemon's nats.c client, so tests do not trust the
code they test."""
import itertools
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field


@dataclass
class Msg:
    subject: str
    data: bytes
    reply: str = ""
    headers: dict = field(default_factory=dict)
    raw_headers: str = ""  # the header block as sent ("NATS/1.0\r\nKey: value")

    def json(self):
        return json.loads(self.data)


class NatsError(Exception):
    pass


class Client:
    def __init__(self, port, host="127.0.0.1", timeout=5.0, tls_ca=None, **connect_fields):
        """tls_ca: the CA file of a server that requires TLS, which starts after its INFO."""
        self.sock = socket.create_connection((host, port), timeout)
        self.buf = b""
        self.sids = itertools.count(1)
        self.inbox = []  # messages read while waiting for something else
        self.info = json.loads(self._line(time.monotonic() + timeout).split(b" ", 1)[1])
        if tls_ca:
            self.sock = ssl.create_default_context(cafile=tls_ca).wrap_socket(self.sock, server_hostname=host)
        connect = {"verbose": False, "pedantic": False, "lang": "python-test", "version": "1",
                   "protocol": 1, "headers": True, "no_responders": True, **connect_fields}
        self.sock.sendall(f"CONNECT {json.dumps(connect)}\r\n".encode())
        self.flush(timeout)

    @classmethod
    def from_url(cls, url, timeout=5.0):
        """nats://host:port (the first of a comma-separated list)."""
        match = re.fullmatch(r"(?:nats://)?([^:/]+)(?::(\d+))?/?", url.split(",")[0])
        if not match:
            raise NatsError(f"unsupported server URL {url!r}")
        return cls(int(match.group(2) or 4222), match.group(1), timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the NATS server in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no data from the NATS server in time") from None
        if not chunk:
            raise NatsError("the NATS server closed the connection")
        self.buf += chunk

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self, deadline):
        """The next MSG/HMSG; answers PINGs, returns None on PONG."""
        while True:
            line = self._line(deadline)
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line == b"PONG":
                return None
            elif line.startswith(b"-ERR"):
                raise NatsError(line.decode())
            elif line.startswith(b"MSG "):
                parts = line.decode().split()
                reply = parts[3] if len(parts) == 5 else ""
                return Msg(parts[1], self._exactly(int(parts[-1]), deadline), reply)
            elif line.startswith(b"HMSG "):
                parts = line.decode().split()
                reply = parts[3] if len(parts) == 6 else ""
                raw = self._exactly(int(parts[-1]), deadline)
                head, data = raw[:int(parts[-2])], raw[int(parts[-2]):]
                lines = head.decode().split("\r\n")
                status = lines[0].split()  # "NATS/1.0 503" for no responders
                headers = {"Status": status[1]} if len(status) > 1 else {}
                for header in lines[1:]:
                    if ":" in header:
                        key, value = header.split(":", 1)
                        headers[key.strip()] = value.strip()
                return Msg(parts[1], data, reply, headers, head.decode().strip())

    def flush(self, timeout=5.0):
        """Round trip: everything sent before has reached the server."""
        self.sock.sendall(b"PING\r\n")
        deadline = time.monotonic() + timeout
        while (msg := self._read(deadline)) is not None:
            self.inbox.append(msg)

    def subscribe(self, subject):
        sid = next(self.sids)
        self.sock.sendall(f"SUB {subject} {sid}\r\n".encode())
        self.flush()
        return sid

    def publish(self, subject, data=b"", reply="", headers=None):
        data = data if isinstance(data, bytes) else data.encode()
        if not headers:
            self.sock.sendall(f"PUB {subject} {reply} {len(data)}\r\n".encode().replace(b"  ", b" ") + data + b"\r\n")
            return
        head = ("NATS/1.0\r\n" + "".join(f"{key}: {value}\r\n" for key, value in headers.items()) + "\r\n").encode()
        self.sock.sendall(f"HPUB {subject} {reply} {len(head)} {len(head) + len(data)}\r\n".encode().replace(b"  ", b" ")
                          + head + data + b"\r\n")

    def next_msg(self, timeout=5.0, subject=None):
        """The next message (on `subject`, if given; others are kept)."""
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.inbox):
            if subject is None or msg.subject == subject:
                return self.inbox.pop(i)
        while True:
            msg = self._read(deadline)
            if msg is None:
                continue
            if subject is None or msg.subject == subject:
                return msg
            self.inbox.append(msg)

    def messages(self, count, timeout=5.0, subject=None):
        return [self.next_msg(timeout, subject) for _ in range(count)]

    def gather(self, subject, data=b"", wait=1.0, expect=None, headers=None):
        """Scatter-gather: every reply within `wait` seconds (or `expect` of them)."""
        inbox = f"_INBOX.test.{next(self.sids)}"
        self.subscribe(inbox)
        self.publish(subject, data, reply=inbox, headers=headers)
        replies = []
        deadline = time.monotonic() + wait
        while expect is None or len(replies) < expect:
            try:
                replies.append(self.next_msg(max(deadline - time.monotonic(), 0.001), inbox))
            except TimeoutError:
                break
        return replies

    def request(self, subject, data=b"", timeout=2.0, headers=None):
        replies = self.gather(subject, data, timeout, expect=1, headers=headers)
        if not replies:
            raise TimeoutError(f"no reply on {subject}")
        if replies[0].headers.get("Status") == "503":
            raise NatsError(f"no responders on {subject}")
        return replies[0]

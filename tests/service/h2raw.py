"""A raw HTTP/2 client (RFC 9113) that opens gRPC calls and never sends their message, as a
slowloris attacker does; no HTTP/2 library needed for HEADERS without Huffman coding."""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
REFUSED_STREAM = 0x7


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _string(s: bytes) -> bytes:
    assert len(s) < 127  # one-byte length, H = 0 (RFC 7541 §5.2)
    return bytes([len(s)]) + s


def literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name (RFC 7541 §6.2.2)."""
    return b"\x00" + _string(name.encode()) + _string(value.encode())


class SlowClient:
    """One connection from ``source`` (any 127/8 address is a distinct peer on loopback)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port = port
        self.next_id = 1
        self.opened: dict[int, float] = {}
        self.ended: dict[int, float] = {}
        self.refused: set[int] = set()
        self.settings: dict[int, int] = {}
        self.closed = False
        self._buf = b""
        self._out = b""
        self._send(PREFACE + frame(SETTINGS, 0, 0))

    def _send(self, data: bytes) -> None:
        self._out += data
        self.flush()

    def flush(self) -> None:
        while self._out and not self.closed:
            try:
                n = self.sock.send(self._out)
            except BlockingIOError:
                return
            except OSError:
                self.closed = True
                return
            self._out = self._out[n:]

    def open(self, n: int, path: str = "/sealgate.v1.Attestation/Challenge") -> None:
        """``n`` calls: HEADERS (END_HEADERS, no END_STREAM), then never a DATA frame."""
        block = (
            literal(":method", "POST") + literal(":scheme", "http") + literal(":path", path)
            + literal(":authority", f"127.0.0.1:{self.port}")
            + literal("content-type", "application/grpc") + literal("te", "trailers")
        )  # fmt: skip
        out = b""
        for _ in range(n):
            out += frame(HEADERS, END_HEADERS, self.next_id, block)
            self.opened[self.next_id] = time.monotonic()
            self.next_id += 2
        self._send(out)

    @property
    def open_streams(self) -> int:
        return len(set(self.opened) - set(self.ended))

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self._buf += data
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[:3], "big")
            if len(self._buf) < 9 + length:
                break
            kind, flags = self._buf[3], self._buf[4]
            stream = int.from_bytes(self._buf[5:9], "big") & 0x7FFFFFFF
            payload = self._buf[9 : 9 + length]
            self._buf = self._buf[9 + length :]
            now = time.monotonic()
            if kind == SETTINGS and not flags & ACK:
                for i in range(0, len(payload) - 5, 6):
                    ident, value = struct.unpack(">HI", payload[i : i + 6])
                    self.settings[ident] = value
                self._send(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self._send(frame(PING, ACK, 0, payload))  # a live peer answers keepalives
            elif kind in (HEADERS, DATA) and flags & END_STREAM and stream:
                self.ended.setdefault(stream, now)
            elif kind == RST_STREAM:
                self.ended.setdefault(stream, now)
                if int.from_bytes(payload[:4], "big") == REFUSED_STREAM:
                    self.refused.add(stream)
            elif kind == GOAWAY:
                self.closed = True

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def pump(
    clients: Iterable[SlowClient],
    until: Callable[[], bool] = lambda: False,
    timeout: float = 1.0,
) -> bool:
    """Read every client's frames until ``until()`` holds or ``timeout`` passes."""
    clients = [c for c in clients if not c.closed]
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            for key, _ in sel.select(min(0.05, max(0.0, deadline - time.monotonic()))):
                c = key.data
                c.on_readable()
                if c.closed:
                    sel.unregister(c.sock)
            for c in clients:
                c.flush()
        return until()
    finally:
        sel.close()

"""The HTTP side port (metrics, JWKS, health, ...): a small HTTP/1.1 server on the asyncio
loop the gRPC server already runs, for a handful of GET routes.

Why not ``http.server``: its threading server spends a thread per connection and waits
forever for a request, so idle connections (slowloris) grow threads and descriptors without
bound until the process cannot accept gRPC connections either. Here a connection costs a
coroutine, the request head must arrive within ``limits.http_timeout`` (and a keep-alive
connection is closed after that long idle), the head is at most 8 KiB, and at most
``limits.http_max_connections`` are open: when full, the connection idle the longest is
closed to make room, so idle ones cannot lock out a scraper. Route handlers run on two
threads of the side port's own, never on the loop, and never queued behind long admin calls
in the server's pool (a health probe must not time out because an audit verification runs).

Only what the routes need from RFC 9112: GET with no body, keep-alive (HTTP/1.1 default),
``Connection: close``, an exact path match (the query is ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent import futures

log = logging.getLogger("sealgate.service")

#: A route: no arguments, returns (status, body, content type). Runs on a side port thread.
Route = Callable[[], tuple[int, bytes, str]]

MAX_HEAD = 8192
#: Requests served on one connection before it is closed (bounds a connection's lifetime).
MAX_REQUESTS_PER_CONNECTION = 1000
#: Pending connections the kernel queues for accept (the listen(2) backlog).
BACKLOG = 128
#: Threads running route handlers.
THREADS = 2
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class _Conn:
    __slots__ = ("idle", "task", "writer")

    def __init__(self, task: asyncio.Task[None] | None, writer: asyncio.StreamWriter) -> None:
        self.task = task
        self.writer = writer
        self.idle = True


class SidePort:
    def __init__(
        self,
        routes: dict[str, Route],
        *,
        timeout: float,
        max_connections: int,
    ) -> None:
        self.routes = routes
        self._pool: futures.ThreadPoolExecutor | None = None
        self.timeout = timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        #: Open connections, the one idle longest first.
        self._conns: OrderedDict[int, _Conn] = OrderedDict()

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD, backlog=BACKLOG, reuse_address=True
        )
        self._pool = futures.ThreadPoolExecutor(THREADS, thread_name_prefix="sealgate-http")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._conns.values()):
            if c.task is not None:
                c.task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _make_room(self) -> bool:
        for key, c in self._conns.items():
            if c.idle:
                del self._conns[key]
                if c.task is not None:
                    c.task.cancel()
                return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.max_connections and not self._make_room():
            writer.close()  # every slot busy with a request in progress
            return
        conn = _Conn(asyncio.current_task(), writer)
        key = id(conn)
        self._conns[key] = conn
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                conn.idle = True
                self._conns.move_to_end(key)
                try:
                    async with asyncio.timeout(self.timeout):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except TimeoutError:
                    return  # just closed: a 408 could pass for the answer to a later request
                except asyncio.LimitOverrunError:
                    await self._send(writer, 431, b"request head too large\n", "text/plain", False)
                    return
                if not await self._respond(head, writer, conn):
                    return
        except asyncio.CancelledError:
            pass  # evicted or stopping: just close
        finally:
            self._conns.pop(key, None)
            writer.close()

    async def _respond(self, head: bytes, writer: asyncio.StreamWriter, conn: _Conn) -> bool:
        """Answer one request; whether the connection stays open."""
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                if line:
                    name, sep, value = line.partition(":")
                    if not sep or not name or name != name.strip():
                        raise ValueError("bad header line")
                    headers[name.lower()] = value.strip()
        except ValueError:
            await self._send(writer, 400, b"bad request\n", "text/plain", False)
            return False
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            await self._send(writer, 400, b"bad request\n", "text/plain", False)
            return False
        if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
            # GET routes take no body; not reading one means the connection cannot be reused.
            await self._send(writer, 413, b"no request body expected\n", "text/plain", False)
            return False
        connection = headers.get("connection", "").lower()
        keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if method != "GET":
            await self._send(writer, 501, b"unsupported method\n", "text/plain", keep)
            return keep
        route = self.routes.get(target.split("?", 1)[0])
        if route is None:
            code, body, ctype = 404, b"not found\n", "text/plain"
        else:
            # Only while its handler runs is a connection not the first to close when full
            # (a client slow to read its answer is as good as idle).
            conn.idle = False
            try:
                loop = asyncio.get_running_loop()
                code, body, ctype = await loop.run_in_executor(self._pool, route)
            except Exception as e:  # never a traceback to the client
                log.error("http side port error: %s", type(e).__name__)
                code, body, ctype = 500, b"internal error\n", "text/plain"
            finally:
                conn.idle = True
        return await self._send(writer, code, body, ctype, keep) and keep

    async def _send(
        self, writer: asyncio.StreamWriter, code: int, body: bytes, ctype: str, keep: bool
    ) -> bool:
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\nServer: sealgate\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        try:
            writer.write(head.encode("latin-1") + body)
            # A client that does not read its answer is cut off after the same bound.
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return False
        return True

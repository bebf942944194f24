"""The attestation hot path's round trips on libpq directly, through psycopg's own libpq
wrapper (``psycopg.pq``, https://www.psycopg.org/psycopg3/docs/api/pq.html), not its cursors.

Why not a cursor: per flow the hot path makes one read (``attest_inputs``) and its share of
two group-commit round trips, with a handful of statements whose shapes never change. Through
a psycopg cursor each round trip runs the general machinery — query conversion and parameter
adaptation, the prepare manager, result loaders, a generator-driven wait with a timer per
wait — and that, not the database, was the biggest difference between a PostgreSQL replica
and a SQLite one (``perf``: +0.64 ms of interpreter time per flow). Measured on the event loop
(2-core Xeon, 16 concurrent callers, PostgreSQL on the same host): a prepared read through a
cursor cost 160-200 µs of client CPU, the same statement sent and read here 90-120 µs.

What is kept from psycopg: the connection (pool, TLS, authentication, notices), libpq's own
escaping (``PQescapeLiteral``) and its error objects (``psycopg.errors.error_from_result``), so
a failure here maps to a ``StorageError`` exactly as one from a cursor does. What is written
here: sending a query, waiting on the socket (the event loop's reader under
``sealgate.storage.bridge``, ``select`` on a thread) and decoding the few binary column types
these statements return.

A connection is used by one caller at a time (it is checked out of the pool), and is left
idle or in the transaction the caller opened. A failure in the middle of a round trip closes
it (its protocol state is unknown), and the pool replaces it.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg import pq

from sealgate.storage import bridge

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


async def _ready(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    if write:
        loop.add_writer(fd, bridge.settle, fut)
    else:
        loop.add_reader(fd, bridge.settle, fut)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _wait(fd: int, write: bool) -> None:
    """Until ``fd`` is readable (or writable): on the loop when bridged, else blocking this
    thread. No client-side timeout, as psycopg's own waits: the server's statement timeout
    bounds a statement, and libpq's TCP keepalives a dead peer."""
    if bridge.active():
        bridge.wait(_ready(fd, write))
    elif write:
        select.select([fd], [fd], [])
    else:
        select.select([fd], [], [])


def _round_trip(conn: psycopg.Connection[Any], send: Callable[[pq.abc.PGconn], None]) -> list[Any]:
    """``send`` one query message, then every result of it; raises the first error result as
    psycopg would (the connection stays usable: the server has finished the query)."""
    pg = conn.pgconn
    try:
        send(pg)
        # Non-blocking connection (psycopg always sets it): what the socket did not take is
        # flushed as it drains; input is consumed meanwhile so the server never stalls on a
        # full pipe in the other direction (libpq-async.html, PQflush).
        while pg.flush():
            _wait(pg.socket, True)
            pg.consume_input()
        results: list[Any] = []
        while True:
            while pg.is_busy():
                _wait(pg.socket, False)
                pg.consume_input()
            res = pg.get_result()
            if res is None:
                break
            results.append(res)
    except OSError as e:
        # The socket itself failed (select on a descriptor gone bad): a lost connection,
        # reported as psycopg reports one so storage maps it to "unavailable".
        conn.close()
        raise psycopg.OperationalError("the connection's socket failed") from e
    except BaseException:
        # Mid-protocol (a lost connection, a cancelled caller): unusable from here.
        conn.close()
        raise
    for res in results:
        if res.status not in _OK:
            raise psycopg.errors.error_from_result(res, encoding="utf-8")
    return results


def simple(conn: psycopg.Connection[Any], query: bytes) -> list[Any]:
    """One simple-protocol Query message (several statements allowed); a result per
    statement, text format."""
    return _round_trip(conn, lambda pg: pg.send_query(query))


def _param(value: str | int) -> bytes:
    # libpq sends a text parameter as a C string (libpq-exec.html, PQexecPrepared: lengths
    # are ignored for text), so a NUL would silently cut the value short: refused, as
    # psycopg's own text adapter refuses it, with the same error class (a DataError).
    if isinstance(value, int):
        return str(value).encode()
    try:
        raw = value.encode()
    except UnicodeEncodeError:
        raise psycopg.DataError("a parameter is not valid UTF-8 text") from None
    if b"\x00" in raw:
        raise psycopg.DataError("PostgreSQL text cannot contain NUL (0x00) bytes")
    return raw


def prepared(conn: psycopg.Connection[Any], name: bytes, params: Sequence[str | int]) -> Any:
    """Execute the prepared statement ``name`` with text parameters; its result, binary
    format."""
    values = [_param(p) for p in params]
    (res,) = _round_trip(
        conn, lambda pg: pg.send_query_prepared(name, values, result_format=pq.Format.BINARY)
    )
    return res


def literal(conn: psycopg.Connection[Any], value: str) -> bytes:
    """``value`` as a quoted SQL literal, escaped by libpq for this connection."""
    return pq.Escaping(conn.pgconn).escape_literal(value.encode())


# Binary output of the column types the hot statements return (pg_type OIDs).
_INT2, _INT4, _INT8, _TEXT, _VARCHAR, _BYTEA, _BOOL = 21, 23, 20, 25, 1043, 17, 16


def _decoder(oid: int) -> Callable[[bytes], Any]:
    if oid in (_INT2, _INT4, _INT8):
        return lambda b: int.from_bytes(b, "big", signed=True)
    if oid in (_TEXT, _VARCHAR):
        return lambda b: b.decode()
    if oid == _BYTEA:
        return bytes
    if oid == _BOOL:
        return lambda b: b != b"\x00"
    raise psycopg.InterfaceError(f"column type {oid} is not decoded by pgwire")


def rows(res: Any) -> list[tuple[Any, ...]]:
    """A binary-format result's rows as Python values (NULL → None)."""
    decode = [_decoder(res.ftype(j)) for j in range(res.nfields)]
    out: list[tuple[Any, ...]] = []
    for i in range(res.ntuples):
        out.append(
            tuple(
                None if (v := res.get_value(i, j)) is None else d(v) for j, d in enumerate(decode)
            )
        )
    return out


# Text-format values (the simple protocol's results) of NOT NULL columns.
def _text(res: Any, row: int, column: int) -> bytes:
    v = res.get_value(row, column)
    if v is None:
        raise psycopg.InterfaceError("unexpected NULL in a hot-path result")
    return bytes(v)


def text_int(res: Any, row: int, column: int) -> int:
    return int(_text(res, row, column))


def text_bytea(res: Any, row: int, column: int) -> bytes:
    # bytea's text output is hex, "\\x" then two digits per byte (datatype-binary.html).
    v = _text(res, row, column)
    if not v.startswith(b"\\x"):
        raise psycopg.InterfaceError("bytea output is not in hex format")
    return bytes.fromhex(v[2:].decode())


def text_ints(res: Any) -> list[int]:
    """The first column of every row, as integers."""
    return [text_int(res, i, 0) for i in range(res.ntuples)]


__all__ = ["literal", "prepared", "rows", "simple", "text_bytea", "text_int", "text_ints"]

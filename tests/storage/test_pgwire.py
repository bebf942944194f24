"""``sealgate.storage.pgwire``: the hot path's round trips on libpq directly. Values decode
to what a psycopg cursor gives, errors are psycopg's own (so storage maps them the same way),
a message larger than the socket's buffers goes through, calls on the event loop interleave,
and a round trip cut off in the middle never leaves a half-read connection in use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
from sealgate.storage import bridge, pgwire


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    c = psycopg.connect(pg_url, autocommit=True)
    try:
        yield c
    finally:
        c.close()


def test_prepared_rows_decode_like_a_cursor(conn: psycopg.Connection[Any]) -> None:
    sql = (
        "SELECT $1::bigint, $2::int, $3::text, decode($4, 'hex'), $5::bool, NULL::text,"
        " (-2)::smallint, 'é'::varchar"
    )
    pgwire.simple(conn, b"PREPARE t (text, text, text, text, text) AS " + sql.encode())
    params: list[str | int] = [-(2**63), 7, "ünï", "00ff10", "true"]
    (row,) = pgwire.rows(pgwire.prepared(conn, b"t", params))
    cur = psycopg.ClientCursor(conn)  # EXECUTE takes literals, not bind parameters
    want = cur.execute("EXECUTE t (%s, %s, %s, %s, %s)", [str(p) for p in params]).fetchone()
    assert row == want == (-(2**63), 7, "ünï", b"\x00\xff\x10", True, None, -2, "é")


def test_an_undecoded_type_is_refused(conn: psycopg.Connection[Any]) -> None:
    pgwire.simple(conn, b"PREPARE u AS SELECT now()")
    with pytest.raises(psycopg.InterfaceError, match="not decoded"):
        pgwire.rows(pgwire.prepared(conn, b"u", []))


def test_text_results_of_a_multi_statement_message(conn: psycopg.Connection[Any]) -> None:
    res = pgwire.simple(
        conn, b"SELECT 1; SELECT generate_series(3, 5); SELECT 41::bigint, '\\x0aff'::bytea"
    )
    assert len(res) == 3
    assert pgwire.text_ints(res[1]) == [3, 4, 5]
    assert pgwire.text_int(res[2], 0, 0) == 41
    assert pgwire.text_bytea(res[2], 0, 1) == b"\x0a\xff"
    with pytest.raises(psycopg.InterfaceError):
        pgwire.text_int(pgwire.simple(conn, b"SELECT NULL::int")[0], 0, 0)
    with pytest.raises(psycopg.InterfaceError):
        pgwire.text_bytea(pgwire.simple(conn, b"SELECT 'x'::text")[0], 0, 0)


def test_an_error_is_psycopgs_and_the_connection_stays_usable(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero) as ei:
        pgwire.simple(conn, b"SELECT 1; SELECT 1/0; SELECT 2")
    assert ei.value.sqlstate == "22012"
    with pytest.raises(psycopg.errors.UniqueViolation) as ui:
        pgwire.simple(
            conn,
            b"CREATE TEMP TABLE k (id int PRIMARY KEY); INSERT INTO k VALUES (1), (1)",
        )
    assert ui.value.diag.constraint_name == "k_pkey"
    assert not conn.closed
    assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert pgwire.text_int(pgwire.simple(conn, b"SELECT 3")[0], 0, 0) == 3


def test_literals_are_escaped_by_libpq(conn: psycopg.Connection[Any]) -> None:
    tricky = "it's \\ a '); DROP TABLE x; -- \u2603"
    (res,) = pgwire.simple(conn, b"SELECT " + pgwire.literal(conn, tricky))
    assert res.get_value(0, 0).decode() == tricky


def test_a_message_larger_than_the_socket_buffers(conn: psycopg.Connection[Any]) -> None:
    """8 MiB out and back: the send is flushed as the socket drains, on a thread and on the
    event loop."""
    big = "ab" * (4 << 20)
    query = b"SELECT length(" + pgwire.literal(conn, big) + b"), " + pgwire.literal(conn, big)

    def once() -> tuple[int, int]:
        (res,) = pgwire.simple(conn, query)
        return pgwire.text_int(res, 0, 0), len(res.get_value(0, 1))

    assert once() == (len(big), len(big))

    async def main() -> tuple[int, int]:
        return await bridge.run(once)

    assert asyncio.run(main()) == (len(big), len(big))


def test_calls_on_the_loop_interleave(pg_url: str) -> None:
    conns = [psycopg.connect(pg_url, autocommit=True) for _ in range(6)]
    try:

        def sleep_on(c: psycopg.Connection[Any]) -> Callable[[], list[Any]]:
            return lambda: pgwire.simple(c, b"SELECT pg_sleep(0.3)")

        async def main() -> list[list[Any]]:
            return await asyncio.gather(*(bridge.run(sleep_on(c)) for c in conns))

        t0 = time.monotonic()
        assert len(asyncio.run(main())) == 6
        assert time.monotonic() - t0 < 1.5  # six 0.3 s sleeps, one thread
    finally:
        for c in conns:
            c.close()


def test_a_round_trip_cut_off_closes_the_connection(conn: psycopg.Connection[Any]) -> None:
    """A caller cancelled while it waits for the server: the connection is closed (its
    protocol state is unknown), never handed back half-read."""

    async def main() -> None:
        task = asyncio.create_task(bridge.run(lambda: pgwire.simple(conn, b"SELECT pg_sleep(5)")))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 3
    assert conn.closed


def test_a_failing_socket_is_a_lost_connection(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int, write: bool) -> None:
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(pgwire, "_wait", broken)
    with pytest.raises(psycopg.OperationalError):
        pgwire.simple(conn, b"SELECT pg_sleep(0.2)")
    assert conn.closed


def test_a_parameter_libpq_would_cut_short_is_refused(conn: psycopg.Connection[Any]) -> None:
    """libpq sends text parameters as C strings: an id with a NUL in it would be looked up
    as its part before the NUL. Refused instead (a DataError, as psycopg's adapter does), as
    is text that is not UTF-8."""
    pgwire.simple(conn, b"PREPARE e (text) AS SELECT $1::text")
    assert pgwire.rows(pgwire.prepared(conn, b"e", ["ok"])) == [("ok",)]
    for bad in ("id\x00junk", "\udcff"):
        with pytest.raises(psycopg.DataError):
            pgwire.prepared(conn, b"e", [bad])
    assert not conn.closed  # refused before anything was sent


def test_storage_refuses_a_cut_short_id_with_a_code(pg_url: str) -> None:
    """Through storage: a challenge id with a NUL is never looked up by its prefix; it is
    ``storage.value.invalid`` (what the cursor path answered), so the Attest fails closed."""
    from sealgate.storage import Challenge, StorageError
    from sealgate.storage.postgres import PostgresStorage

    st = PostgresStorage(pg_url)
    try:
        st.create_challenge(Challenge("real", b"\x01" * 32, "tpm", "n1", 1000, 5000))
        assert st.attest_inputs("real", "n1", 2000).challenge is not None
        for cid, node in (("real\x00x", "n1"), ("real", "n1\x00")):
            with pytest.raises(StorageError) as ei:
                st.attest_inputs(cid, node, 2000)
            assert ei.value.code == "storage.value.invalid"
    finally:
        st.close()

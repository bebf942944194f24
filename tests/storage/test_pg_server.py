"""The throwaway PostgreSQL: password only in the passfile, SCRAM on TCP, restart in place."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest
from sealgate.testing.postgres import PostgresServer


def test_password_only_in_passfile(postgres_server: PostgresServer, pg_url: str) -> None:
    assert ":" not in pg_url.split("//", 1)[1].split("@", 1)[0]
    mode = stat.S_IMODE(os.stat(postgres_server.passfile).st_mode)
    assert mode == 0o600
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_user, inet_server_addr()::text").fetchone()
    assert row is not None and row[0] == "sealgate" and row[1].startswith("127.0.0.1")


def test_tcp_requires_password(postgres_server: PostgresServer, pg_url: str) -> None:
    # ?passfile= overrides PGPASSFILE: an empty one means no password to offer.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url + "?passfile=/dev/null", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url.replace("sealgate@", "postgres@"), connect_timeout=5)


def test_restart_same_port_keeps_data(postgres_server: PostgresServer, pg_url: str) -> None:
    port = postgres_server.port
    with psycopg.connect(pg_url, connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    postgres_server.kill()
    assert not postgres_server.running
    postgres_server.start()
    assert postgres_server.port == port
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_socket_url_reaches_the_same_database_and_storage_accepts_it(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    """The unix-socket URL (``bench_service.py --pg-unix``) names the same database as the
    TCP one, and sealgate's URL parser and storage take it (no inet address: a socket)."""
    from sealgate.storage.postgres import PostgresStorage
    from sealgate.storage.url import parse

    name = pg_url.rsplit("/", 1)[1]
    url = postgres_server.socket_url(name)
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_database(), inet_server_addr()").fetchone()
    assert row == (name, None)
    db = parse(url)
    assert db.backend == "postgresql"
    st = PostgresStorage(db.target)
    try:
        assert st.config_generation() == 1
    finally:
        st.close()

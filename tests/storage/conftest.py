"""The storage suite runs against both backends: ``storage`` is a fresh SQLite file or a
fresh PostgreSQL database (on the session's throwaway server) per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sealgate.storage import Storage
from sealgate.storage.url import open_storage

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of ``backend`` (no password in it)."""
    if backend == "sqlite":
        return f"sqlite://{tmp_path / 's.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def make_storage(db_url: str) -> Iterator[Callable[[], Storage]]:
    """Open another ``Storage`` on the test's database (another process's view of it); all
    are closed at the end."""
    opened: list[Storage] = []

    def make() -> Storage:
        st = open_storage(db_url)
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()


@pytest.fixture
def storage(make_storage: Callable[[], Storage]) -> Storage:
    return make_storage()


def raw_execute(url: str, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
    """Run SQL on the database behind ``url`` outside sealgate (``?`` placeholders, turned
    into ``%s`` for PostgreSQL), in one committed transaction; each statement's rows."""
    out: list[list[Any]] = []
    if url.startswith("sqlite://"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite://") :])
        try:
            for sql, args in statements:
                out.append(conn.execute(sql, args).fetchall())
            conn.commit()
        finally:
            conn.close()
        return out
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as pconn:
        for sql, args in statements:
            cur = pconn.execute(sql.replace("?", "%s"), args)
            out.append(cur.fetchall() if cur.description else [])
    return out

"""Shared fixtures: isolated swtpm instances and a throwaway PostgreSQL, always stopped by pid."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sealgate.testing import postgres as pgtest
from sealgate.testing.swtpm import Swtpm, tools_available


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A started swtpm with its own ports, state and local CA (EK certs RSA-2048 and ECC)."""
    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed (make setup installs them)")
    tpm = Swtpm(tmp_path / "swtpm")
    try:
        tpm.start()
        yield tpm
    finally:
        tpm.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pgtest.PostgresServer]:
    """One PostgreSQL for the session (fsync on), role ``sealgate`` with its password in a
    passfile exported as PGPASSFILE for this process and its children."""
    if not pgtest.available():
        pytest.skip(f"PostgreSQL server binaries not in {pgtest.PG_BIN} (make setup installs them)")
    server = pgtest.PostgresServer(tmp_path_factory.mktemp("postgres"))
    old = os.environ.get("PGPASSFILE")
    try:
        server.start()
        os.environ.update(server.env())
        yield server
    finally:
        server.cleanup()
        if old is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = old


_db_counter = itertools.count(1)


@pytest.fixture
def pg_url(postgres_server: pgtest.PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test (dropped afterwards); its URL has no password."""
    if not postgres_server.running:
        # A previous test stopped or killed it: every test starts from a running server.
        postgres_server.start()
    name = f"t{os.getpid()}_{next(_db_counter)}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.drop_database(name)

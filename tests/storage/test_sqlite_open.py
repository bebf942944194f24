"""Several processes opening one new SQLite file at the same moment (replicas or workers
sharing a data directory's database on their first start) all open it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sealgate.storage.sqlite import SCHEMA_VERSION, SqliteStorage


def _open(path: str, start: object, out: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    try:
        st = SqliteStorage(path)
        out.put(st.schema_version())  # type: ignore[attr-defined]
        st.close()
    except Exception as e:  # reported, so the parent sees which failed
        out.put(f"{type(e).__name__}: {e}")  # type: ignore[attr-defined]


def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = str(tmp_path / f"new{round_}.db")
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, start, out)) for _ in range(8)]
        for p in procs:
            p.start()
        start.set()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert results == [SCHEMA_VERSION] * len(procs), results

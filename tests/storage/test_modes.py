"""The database and its WAL/SHM files are private to the service user (0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sealgate.storage import ReferenceValue
from sealgate.storage.sqlite import SqliteStorage


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_database_wal_and_shm_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "data" / "sealgate.db"
        st = SqliteStorage(db)
        # A write makes SQLite create the WAL and shared-memory files (lazily).
        st.add_reference_values([ReferenceValue("r", "tpm", "g", "sha256:0", "00", "", 1)])
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        st.close()
    finally:
        os.umask(old)


def test_existing_wide_database_is_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "sealgate.db"
    SqliteStorage(db).close()
    os.chmod(db, 0o644)
    SqliteStorage(db).close()
    assert _mode(db) == 0o600

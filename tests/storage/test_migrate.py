"""``sealgate storage migrate``: SQLite → PostgreSQL → SQLite keeps every table equal."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sealgate.broker.audit import AuditLog
from sealgate.cli import main
from sealgate.storage import (
    AttestationRecord,
    Challenge,
    Enrollment,
    KeyVersionRecord,
    ModelRegistration,
    Node,
    ReferenceValue,
    Revocation,
    SecretRecord,
    SigningKeyRecord,
    Storage,
)
from sealgate.storage.migrate import COPIED, ORDER, MigrateError, migrate_storage
from sealgate.storage.postgres import PostgresStorage
from sealgate.storage.sqlite import SqliteStorage


def _populate(st: Storage) -> None:
    log = AuditLog(st)
    for i in range(7):
        st.create_challenge(
            Challenge(f"c{i}", bytes([i]) * 32, "tpm", "n1", 1000 + i, 5000),
            log.pending("challenge.issued", "node", {"i": i}, at=1000 + i),
        )
    rec = AttestationRecord("j1", "n1", "tpm", "c0", '{"a":1}', "jkt", 1000, 1300, ("k1",), 2)
    assert st.complete_attestation("c0", 1100, log.pending("attest.decided", "n1", {}, 1100), rec)
    st.add_reference_values(
        [ReferenceValue(f"r{i}", "tpm", "golden", f"pcr{i}", "00" * 32, "d", 5) for i in range(3)]
    )
    st.put_policy("k1", '{"allow": true}', 10)
    st.put_policy("k1", '{"allow": false}', 11)
    st.add_key_version("k1", KeyVersionRecord("k1", 1, b"\x00w1" * 20, "kek-a", 12), "m", True)
    st.add_key_version("k1", KeyVersionRecord("k1", 2, b"\xffw2" * 20, "kek-a", 13), "", False)
    st.add_model_registration(
        ModelRegistration(
            "k1", 2, b"\x00r" * 16, "sha256", '{"kind":"key"}', "v1.0", "m", b"\x00{}", 14, "op"
        )
    )
    st.create_enrollment(Enrollment("e1", "n1", "fp", "ca", b"pub", b"name", b"h" * 32, 1, 99))
    st.upsert_node(Node("n1", "tpm", "fp", "ca", b"name", b"\x00pub", 14, False, 0))
    st.revoke_node("n1", 15)
    st.add_revocation(Revocation(0, "snp", "chip_id:aa", "n1", "why", 16, "op"))
    st.add_revocation(Revocation(0, "tpm", "ek:bb", "", "", 17, "op"))
    st.lift_revocation("snp", "chip_id:aa", 18, "admin")
    st.add_signing_key(SigningKeyRecord("kid1", b"priv1", "{}", 19, 0, "kek-a"), 19)
    st.add_signing_key(SigningKeyRecord("kid2", b"priv2", "{}", 20, 0, "kek-a"), 20)
    st.put_secret(SecretRecord("audit-mac", b"\x01\x02secret", "kek-a", 21))
    for i in range(1200):  # more than two batches of audit rows
        log.append("admin.test", "op", {"n": i, "pad": "x" * (i % 50)}, at=30)


def _dump_sqlite(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    c = sqlite3.connect(path)
    try:
        return {
            t: [tuple(r) for r in c.execute(f"SELECT * FROM {t} ORDER BY {ORDER[t]}")]  # noqa: S608
            for t in COPIED
        }
    finally:
        c.close()


def _dump_pg(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as c:
        return {
            t: [tuple(r) for r in c.execute(f"SELECT * FROM {t} ORDER BY {ORDER[t]}")]  # noqa: S608
            for t in COPIED
        }


def test_sqlite_to_postgres_and_back_keeps_every_table(
    tmp_path: Path, pg_url: str, postgres_server: Any
) -> None:
    src = tmp_path / "src.db"
    st = SqliteStorage(src)
    _populate(st)
    st.close()
    before = _dump_sqlite(src)
    assert all(before[t] for t in COPIED), [t for t in COPIED if not before[t]]

    report = migrate_storage(f"sqlite://{src}", pg_url, batch=500).as_dict()
    assert report["tables"] == {t: len(before[t]) for t in COPIED if t != "config_generation"} | {
        "config_generation": 1
    }
    assert report["audit"]["verified"] and report["audit"]["entries"] == len(before["audit"])
    on_pg = _dump_pg(pg_url)
    assert on_pg == before  # bytes, ints and text unchanged, seq numbers kept

    # The PostgreSQL copy is live: identities continue after the copied seq values.
    pg = PostgresStorage(pg_url)
    assert pg.config_generation() == before["config_generation"][0][0]
    r, new = pg.add_revocation(Revocation(0, "tdx", "ppid:cc", "", "", 40, "op"))
    assert new and r.seq == max(row[0] for row in before["revocations"]) + 1
    row = AuditLog(pg).append("admin.after", "op", {})
    assert row.seq == len(before["audit"]) + 1
    pg.close()

    # And back, through the CLI (JSON on stdout).
    back = tmp_path / "back.db"
    out_file = tmp_path / "out.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["storage", "migrate", "--from", pg_url, "--to", f"sqlite://{back}", "--quiet"])
    out_file.write_text(buf.getvalue())
    assert rc == 0, buf.getvalue()
    doc = json.loads(buf.getvalue())
    assert doc["tables"]["audit"] == len(before["audit"]) + 1
    assert "MACs" in doc["audit"]["checked"]
    again = _dump_sqlite(back)
    expected = _dump_pg(pg_url)
    assert again == expected
    assert os.stat(back).st_mode & 0o077 == 0  # the copy is private like any database


def test_target_not_empty_is_refused(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "src.db"
    st = SqliteStorage(src)
    _populate(st)
    st.close()
    pg = PostgresStorage(pg_url)
    pg.put_policy("other", "{}", 1)
    pg.close()
    with pytest.raises(MigrateError) as e:
        migrate_storage(f"sqlite://{src}", pg_url)
    assert e.value.code == "storage.migrate.target_not_empty"
    # Nothing was written to the target.
    assert [t for t, rows in _dump_pg(pg_url).items() if rows and t != "config_generation"] == [
        "policies"
    ]
    with pytest.raises(MigrateError) as e:
        migrate_storage(f"sqlite://{src}", f"sqlite://{src}")
    assert e.value.code == "storage.migrate.same_database"


def test_empty_source_copies_to_an_empty_target(tmp_path: Path, pg_url: str) -> None:
    SqliteStorage(tmp_path / "empty.db").close()
    report = migrate_storage(f"sqlite://{tmp_path / 'empty.db'}", pg_url)
    assert report.audit_entries == 0 and sum(report.tables.values()) == 1


def test_a_broken_source_chain_fails_verification(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "src.db"
    st = SqliteStorage(src)
    log = AuditLog(st)
    for i in range(3):
        log.append("admin.test", "op", {"n": i}, at=1)
    st.close()
    c = sqlite3.connect(src)
    c.execute("UPDATE audit SET hash = zeroblob(32) WHERE seq = 2")
    c.commit()
    c.close()
    with pytest.raises(MigrateError) as e:
        migrate_storage(f"sqlite://{src}", pg_url)
    assert e.value.code == "storage.migrate.verify_failed"


def test_cli_refuses_a_password_in_argv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "storage",
            "migrate",
            "--from",
            f"sqlite://{tmp_path / 'x.db'}",
            "--to",
            "postgresql://u:hunter2@127.0.0.1:1/db",
        ]
    )
    out = capsys.readouterr()
    assert rc == 2
    assert json.loads(out.out)["errors"][0]["code"] == "config.database.password_in_argv"
    assert "hunter2" not in out.out + out.err
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


def test_cli_missing_source_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "storage",
            "migrate",
            "--from",
            f"sqlite://{tmp_path / 'none.db'}",
            "--to",
            f"sqlite://{tmp_path / 'to.db'}",
        ]
    )
    out = capsys.readouterr()
    assert rc == 2
    assert json.loads(out.out)["errors"][0]["code"] == "storage.not_found"

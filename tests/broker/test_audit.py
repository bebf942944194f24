"""Audit entries: bounded size, MACs under the KEK provider's key, verification in bounded
memory."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from pathlib import Path

import cbor2
import pytest
from sealgate import _core
from sealgate.broker.audit import (
    MAX_ENTRY_BYTES,
    AuditLog,
    decode_entry,
    encode_entry,
    entry_view,
)
from sealgate.broker.auditkeys import AuditKeys, load_audit_keys
from sealgate.broker.kek import KekRing, LocalKeyFileProvider
from sealgate.storage.sqlite import SqliteStorage


@pytest.fixture
def st(tmp_path: Path) -> SqliteStorage:
    return SqliteStorage(tmp_path / "db.sqlite")


@pytest.fixture
def kek(st: SqliteStorage, tmp_path: Path) -> AuditKeys:
    """The audit keys as the service gets them (stored, wrapped under a file KEK)."""
    return load_audit_keys(st, KekRing(LocalKeyFileProvider(tmp_path / "kek.key")))


def _insert(st: SqliteStorage, entries: list[bytes]) -> None:
    """Append already encoded entries, chained, in one transaction (an attacker's or a
    bulk writer's path: no MAC unless the entries carry one)."""
    conn = st._conn()
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    head_seq, head = (int(row[0]), bytes(row[1])) if row else (0, None)
    hashes = _core.audit_chain(entries, head)
    with conn:
        conn.executemany(
            "INSERT INTO audit (seq, entry, hash) VALUES (?, ?, ?)",
            [
                (head_seq + i + 1, e, h)
                for i, (e, h) in enumerate(zip(entries, hashes, strict=True))
            ],
        )


def _legacy(seq: int, details: dict[str, object]) -> bytes:
    """An entry as written before entries were bounded (and before MACs)."""
    doc = {"seq": seq, "time": 1, "event": "attest.denied", "actor": "-", "details": details}
    return bytes(cbor2.dumps(doc, canonical=True))


def test_an_oversized_entry_is_kept_cut_and_marked(kek: AuditKeys) -> None:
    keys = ["k" * 4_000_000] + [f"key-{i}" for i in range(100)]
    details = {"keys": keys, "codes": ["x.y.z"]}
    e = encode_entry(1, 5, "attest.denied", "n" * 10_000, details, kek.mac())
    assert len(e) <= MAX_ENTRY_BYTES
    doc = decode_entry(e)
    full = cbor2.dumps(details, canonical=True)
    assert doc["details"]["truncated"] == {
        "bytes": len(full),
        "sha256": hashlib.sha256(full).hexdigest(),
    }
    summary = doc["details"]["summary"]
    assert summary["codes"] == ["x.y.z"]
    assert summary["keys"][0].startswith("kkk") and summary["keys"][0].endswith("[4000000 chars]")
    assert summary["keys"][-1] == "…[101 items]" and len(summary["keys"]) == 17
    assert doc["actor"].endswith("[10000 chars]") and doc["event"] == "attest.denied"
    # The MAC is spliced into the encoding: it must be the deterministic encoding still.
    assert e == cbor2.dumps(doc, canonical=True)
    # Ordinary entries are untouched.
    small = decode_entry(encode_entry(2, 5, "attest.denied", "n", {"keys": ["a"]}))
    assert small["details"] == {"keys": ["a"]}


def test_a_forged_or_edited_entry_fails_its_mac(st: SqliteStorage, kek: AuditKeys) -> None:
    log = AuditLog(st, kek.mac())
    for i in range(3):
        log.append("e", "a", {"i": i})
    v = log.verify()
    assert v.ok and v.authenticated
    # Appended with a correct link but no MAC (written without the audit key).
    _insert(st, [encode_entry(4, 9, "admin.key.created", "mallory", {"key_id": "x"})])
    v = log.verify()
    assert (v.ok, v.code, v.first_bad_seq) == (False, "audit.entry.unauthenticated", 4)
    st._conn().execute("DELETE FROM audit WHERE seq = 4")
    # With a MAC made under another key.
    other = AuditKeys(os.urandom(32), os.urandom(32))
    _insert(st, [encode_entry(4, 9, "admin.key.created", "mallory", {}, other.mac())])
    v = log.verify()
    assert (v.ok, v.code, v.first_bad_seq) == (False, "audit.entry.bad_mac", 4)
    # Without the audit key the MACs cannot be checked, and the verdict says so.
    v = AuditLog(st).verify()
    assert v.ok and not v.authenticated


def test_entries_from_before_macs_are_accepted_as_a_prefix(
    st: SqliteStorage, kek: AuditKeys
) -> None:
    _insert(st, [_legacy(s, {}) for s in (1, 2)])
    log = AuditLog(st, kek.mac())
    log.append("e", "a", {})
    assert log.verify().ok


def test_list_pages_stop_at_their_byte_budget(st: SqliteStorage) -> None:
    # Entries written before the size bound existed can be megabytes each.
    _insert(st, [_legacy(s, {"k": "x" * 300_000}) for s in range(1, 11)])
    page = st.list_audit(0, 1000, max_bytes=1 << 20)
    assert 1 <= len(page) <= 4
    assert [len(p) for p in st.iter_audit(1000, 1 << 20)] == [4, 4, 2]
    view = entry_view(page[0].entry)
    assert view["details"]["truncated"]["bytes"] == len(page[0].entry)
    assert len(cbor2.dumps(view)) < MAX_ENTRY_BYTES


def test_verify_of_a_large_log_stays_in_bounded_memory(st: SqliteStorage) -> None:
    """50 000 entries (≈ 40 MB, the first 40 of them 0.5 MB each, as the unbounded key ids
    once wrote): verification holds one batch at a time."""
    _insert(st, [_legacy(s, {"k": "x" * 500_000}) for s in range(1, 41)])
    pad = "y" * 300
    for start in range(41, 50_001, 10_000):
        stop = min(start + 10_000, 50_001)
        _insert(
            st,
            [
                encode_entry(s, 1, "attest.denied", "node", {"keys": [pad]})
                for s in range(start, stop)
            ],
        )
    log = AuditLog(st)
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        v = log.verify()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert v.ok and v.entries == 50_000, v
    assert peak < 8 << 20, f"verify peaked at {peak / 2**20:.1f} MiB"
    assert time.monotonic() - t0 < 60

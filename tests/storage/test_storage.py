"""Both storage backends: migrations, atomic single use across threads and processes, audit
append (``storage`` is SQLite or PostgreSQL, see conftest.py)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sealgate import _core
from sealgate.storage import (
    AttestationRecord,
    Challenge,
    Enrollment,
    KeyVersionRecord,
    ModelRegistration,
    Node,
    ReferenceValue,
    SigningKeyRecord,
    Storage,
    StorageError,
)
from sealgate.storage.schema import SCHEMA_VERSION
from sealgate.storage.sqlite import SqliteStorage
from sealgate.storage.url import open_storage

from tests.storage.conftest import raw_execute

Make = Callable[[], Storage]


def _challenge(cid: str, expires: int = 2000) -> Challenge:
    return Challenge(cid, b"\x01" * 32, "tpm", "n1", 1000, expires)


def test_migrates_from_empty_and_is_idempotent(make_storage: Make, db_url: str) -> None:
    st = make_storage()
    assert st.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
    st.close()
    st2 = make_storage()
    assert st2.migrate() == SCHEMA_VERSION  # type: ignore[attr-defined]
    versions = raw_execute(db_url, [("SELECT version FROM schema_version ORDER BY version", ())])
    assert [int(r[0]) for r in versions[0]] == list(range(1, SCHEMA_VERSION + 1))


def test_sqlite_is_wal(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    SqliteStorage(db).close()
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_newer_schema_is_refused(make_storage: Make, db_url: str) -> None:
    make_storage().close()
    raw_execute(db_url, [("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))])
    with pytest.raises(StorageError) as e:
        make_storage()
    assert e.value.code == "storage.schema.too_new"


def test_challenge_single_use_and_expiry(storage: Storage) -> None:
    st = storage
    st.create_challenge(_challenge("a"))
    got = st.consume_challenge("a", now=1500)
    assert got is not None and got.nonce == b"\x01" * 32
    assert st.consume_challenge("a", now=1500) is None
    st.create_challenge(_challenge("b", expires=1200))
    assert st.consume_challenge("b", now=1200) is None  # expired at its expiry second
    assert st.consume_challenge("missing", now=0) is None
    assert st.purge_expired(1500) == 1  # "b"; "a" (used) expires at 2000


def test_attest_inputs_reads_challenge_node_and_generation_in_one(storage: Storage) -> None:
    st = storage
    st.create_challenge(Challenge("c1", bytes(range(32)), "tpm", "n1", 1000, 2000))
    node = Node("n1", "tpm", "fp", "ca", b"\x00name", b"\xffpub", 7, False, 0)
    st.upsert_node(node)
    got = st.attest_inputs("c1", "n1", 1500)
    assert got.challenge == Challenge("c1", bytes(range(32)), "tpm", "n1", 1000, 2000)
    assert got.node == node
    assert got.generation == st.config_generation()
    # Unknown, expired or used challenge, unknown node: None each, the generation still read.
    assert st.attest_inputs("nope", "n2", 1500).challenge is None
    assert st.attest_inputs("c1", "n2", 1500).node is None
    assert st.attest_inputs("c1", "n1", 2000).challenge is None
    assert st.consume_challenge("c1", now=1500) is not None
    after = st.attest_inputs("c1", "n1", 1500)
    assert after.challenge is None and after.node == node
    st.revoke_node("n1", 1600)
    revoked = st.attest_inputs("c1", "n1", 1600).node
    assert revoked is not None and revoked.revoked and revoked.revoked_at == 1600
    # The generation moves with a configuration change.
    before = st.config_generation()
    st.add_reference_values([ReferenceValue("r9", "tpm", "s", "sha256:0", "00" * 32, "", 1)])
    assert st.attest_inputs("x", "n1", 0).generation > before


def test_challenge_consumed_once_across_threads(storage: Storage) -> None:
    st = storage
    st.create_challenge(_challenge("t"))
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        wins.append(st.consume_challenge("t", now=1500) is not None)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def _race_in_processes(target: Callable[..., None], args: list[tuple[str, ...]]) -> list[bool]:
    """Run ``target(*a, queue)`` in one spawned process per ``a``; their results."""
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[bool] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, q)) for a in args]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def _consume_in_process(db: str, q: multiprocessing.Queue[bool]) -> None:
    st = open_storage(db)
    q.put(st.consume_challenge("p", now=1500) is not None)
    st.close()


def test_challenge_consumed_once_across_processes(storage: Storage, db_url: str) -> None:
    storage.create_challenge(_challenge("p"))
    results = _race_in_processes(_consume_in_process, [(db_url,)] * 4)
    assert sorted(results) == [False, False, False, True]


def test_reference_values_policies_keys(storage: Storage) -> None:
    st = storage
    rv = ReferenceValue("r1", "tpm", "golden", "sha256:0", "00" * 32, "", 1)
    st.add_reference_values([rv])
    with pytest.raises(StorageError):
        st.add_reference_values([rv])
    assert st.list_reference_values("tpm", "golden") == [rv]
    assert st.list_reference_values("snp") == []
    assert st.remove_reference_value("r1") and not st.remove_reference_value("r1")

    p1 = st.put_policy("k", "{}", 5)
    p2 = st.put_policy("k", '{"a":1}', 6)
    assert (p1.revision, p2.revision) == (1, 2)
    assert st.get_policy("k") == p2
    assert st.delete_policy("k") and st.get_policy("k") is None

    v1 = KeyVersionRecord("m", 1, b"w1", "kek", 10)
    rec = st.add_key_version("m", v1, "model", create=True)
    assert rec.current_version == 1 and rec.versions == (1,)
    with pytest.raises(StorageError):
        st.add_key_version("m", v1, "model", create=True)
    with pytest.raises(StorageError):
        st.add_key_version("m", KeyVersionRecord("m", 3, b"w", "kek", 11), "", create=False)
    rec = st.add_key_version("m", KeyVersionRecord("m", 2, b"w2", "kek", 11), "", create=False)
    assert rec.versions == (1, 2) and rec.current_version == 2
    assert st.get_key_version("m", 1) == v1


def test_enrollment_and_nodes(storage: Storage) -> None:
    st = storage
    e = Enrollment("e1", "n1", "fp", "ca", b"pub", b"name", b"h" * 32, 1, 100)
    st.create_enrollment(e)
    assert st.consume_enrollment("e1", 50) == e
    assert st.consume_enrollment("e1", 50) is None
    st.upsert_node(Node("n1", "tpm", "fp", "ca", b"name", b"pub", 1, False, 0))
    assert st.get_node_by_ak(b"name") is not None
    # The same AK enrolled under another id moves there.
    st.upsert_node(Node("n2", "tpm", "fp", "ca", b"name", b"pub", 2, False, 0))
    assert st.get_node("n1") is None
    revoked = st.revoke_node("n2", 9)
    assert revoked is not None and revoked.revoked and revoked.revoked_at == 9


def test_audit_append_chains_under_concurrency(storage: Storage) -> None:
    st = storage

    def append(i: int) -> None:
        st.append_audit(lambda seq: f"{seq}:{i}".encode(), _core.audit_link)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = st.list_audit(0, 100)
    assert [r.seq for r in rows] == list(range(1, 21))
    assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None


def test_config_generation_moves_with_every_appraisal_input(make_storage: Make) -> None:
    """Verifiers cache reference values, policies and keys per generation (migration 2):
    every write to those tables, from any connection, must move it."""
    st = make_storage()
    other = make_storage()  # another process's view of the same database
    seen = [st.config_generation()]

    def moved() -> None:
        g = other.config_generation()
        assert g > seen[-1]
        seen.append(g)

    st.add_reference_values([ReferenceValue("r1", "tpm", "s", "sha256:0", "00" * 32, "", 1)])
    moved()
    assert st.remove_reference_value("r1")
    moved()
    st.put_policy("k", "{}", 5)
    moved()
    st.put_policy("k", '{"a":1}', 6)
    moved()
    assert st.delete_policy("k")
    moved()
    st.add_key_version("m", KeyVersionRecord("m", 1, b"w" * 60, "kek", 1), "", create=True)
    moved()
    st.add_key_version("m", KeyVersionRecord("m", 2, b"v" * 60, "kek", 2), "", create=False)
    moved()
    # Writes to other tables leave it alone (no cache churn per attestation).
    st.create_challenge(_challenge("c"))
    st.consume_challenge("c", now=1500)
    assert other.config_generation() == seen[-1]
    st.close()
    other.close()


def _attestation(jti: str, cid: str) -> AttestationRecord:
    return AttestationRecord(jti, "n1", "tpm", cid, "{}", "jkt", 1000, 1300)


def _complete_in_process(db: str, jti: str, q: multiprocessing.Queue[bool]) -> None:
    st = open_storage(db)
    q.put(
        st.complete_attestation(
            "q",
            1500,
            (lambda seq: f"{seq}:{jti}".encode(), _core.audit_link),
            _attestation(jti, "q"),
        )
    )
    st.close()


def test_attestation_completes_once_and_writes_only_then(storage: Storage, db_url: str) -> None:
    """Attest reads the challenge, verifies, then consumes it in the transaction that records
    the decision: of concurrent completions (threads and processes) exactly one commits, and
    the losers leave no attestation row and no audit entry."""
    db = db_url
    st = storage
    st.create_challenge(_challenge("t"))
    assert st.get_challenge("t", now=1500) is not None
    assert st.get_challenge("t", now=2000) is None  # expired at its expiry second
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        barrier.wait()
        audit = (lambda seq: f"{seq}:t{i}".encode(), _core.audit_link)
        wins.append(st.complete_attestation("t", 1500, audit, _attestation(f"t{i}", "t")))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]
    assert st.get_challenge("t", now=1500) is None
    assert sum(st.get_attestation(f"t{i}") is not None for i in range(6)) == 1
    assert len(st.list_audit()) == 1
    # Expired: nothing is written.
    st.create_challenge(_challenge("x", expires=1200))
    assert not st.complete_attestation("x", 1200, (lambda seq: b"x", _core.audit_link))
    assert len(st.list_audit()) == 1
    # Across processes.
    st.create_challenge(_challenge("q"))
    results = _race_in_processes(_complete_in_process, [(db, f"q{i}") for i in range(4)])
    assert sorted(results) == [False, False, False, True]
    assert sum(st.get_attestation(f"q{i}") is not None for i in range(4)) == 1
    assert len(st.list_audit()) == 2
    st.close()


def test_atomic_commits_all_or_nothing(storage: Storage) -> None:
    """Storage.atomic: an admin change and its audit entry commit together or not at all."""
    st = storage
    entry = (lambda seq: f"{seq}".encode(), _core.audit_link)
    with pytest.raises(RuntimeError), st.atomic():
        st.put_policy("k", "{}", 5)
        st.append_audit(*entry)
        raise RuntimeError("crash between the change and the commit")
    assert st.get_policy("k") is None and st.list_audit() == []

    rv = ReferenceValue("r1", "tpm", "golden", "sha256:0", "00" * 32, "", 1)
    st.add_reference_values([rv])
    seen_outside: list[object] = []
    with st.atomic():
        st.put_policy("k", "{}", 6)
        # A failing call inside is a savepoint: only its own writes are undone.
        rv2 = ReferenceValue("r2", "tpm", "golden", "sha256:1", "00" * 32, "", 1)
        with pytest.raises(StorageError):
            st.add_reference_values([rv2, rv])
        st.append_audit(*entry)
        # Other connections see nothing until the commit.
        t = threading.Thread(target=lambda: seen_outside.append(st.get_policy("k")))
        t.start()
        t.join()
    assert seen_outside == [None]
    assert st.get_policy("k") is not None
    assert [v.id for v in st.list_reference_values()] == ["r1"]
    assert [r.seq for r in st.list_audit()] == [1]


def test_purge_expired_in_batches_keeps_live_rows(storage: Storage, db_url: str) -> None:
    st = storage
    for i in range(1203):
        st.create_challenge(_challenge(f"old{i}", expires=1500))
    st.create_challenge(_challenge("live", expires=3000))
    st.create_enrollment(Enrollment("e-old", "n", "fp", "ca", b"p", b"a", b"h" * 32, 1, 1500))
    st.create_enrollment(Enrollment("e-live", "n", "fp", "ca", b"p", b"b", b"h" * 32, 1, 3000))
    assert st.consume_challenge("old0", 1000) is not None  # used or not, expired rows go
    assert st.purge_expired(2000, batch=500) == 1203 + 1
    assert st.purge_expired(2000) == 0
    assert st.get_challenge("live", 2000) is not None
    assert st.consume_enrollment("e-live", 2000) is not None
    left = raw_execute(db_url, [("SELECT COUNT(*) FROM challenges", ())])
    assert left[0][0][0] == 1


def test_wal_stays_bounded_under_continuous_writes(tmp_path: Path) -> None:
    """SQLite checkpoints inside the COMMIT that crosses 1000 WAL pages, under the write
    lock, so the checkpoint completes and the WAL restarts: it must not grow with the load
    (a background PASSIVE checkpoint, tried once, let it reach 64 MB)."""
    st = SqliteStorage(tmp_path / "s.db")
    audit = (lambda seq: bytes(200), _core.audit_link)
    for i in range(4000):
        st.create_challenge(_challenge(f"c{i:05d}"), audit=audit)
    wal = tmp_path / "s.db-wal"
    assert wal.stat().st_size < 8 * 1024 * 1024, wal.stat().st_size


def test_attestation_records_keep_their_granted_keys_and_are_purged_after_expiry(
    storage: Storage,
) -> None:
    st = storage
    audit = (lambda seq: f"{seq}".encode(), _core.audit_link)
    for i in range(205):
        st.create_challenge(_challenge(f"c{i}", expires=3000))
        rec = AttestationRecord(f"old{i}", "n1", "tpm", f"c{i}", "{}", "jkt", 1000, 1300)
        assert st.complete_attestation(f"c{i}", 1100, audit, rec)
    st.create_challenge(_challenge("live", expires=3000))
    live = AttestationRecord("live", "n1", "tpm", "live", "{}", "jkt", 1000, 2500, ("a", "b"))
    assert st.complete_attestation("live", 1100, audit, live)
    assert st.get_attestation("live") == live
    old = st.get_attestation("old0")
    assert old is not None and old.granted_key_ids == ()
    # Batched like the challenges (200 a transaction); challenges live until 3000.
    assert st.purge_expired(2000) == 205
    assert st.get_attestation("old0") is None and st.get_attestation("old204") is None
    assert st.get_attestation("live") == live
    assert st.purge_expired(2600) == 1 and st.get_attestation("live") is None
    st.close()


def test_signing_key_changes_move_the_generation(make_storage: Make) -> None:
    """Every process notices a signing-key rotation by the generation it reads anyway."""
    st = make_storage()
    other = make_storage()
    g = other.config_generation()
    st.add_signing_key(SigningKeyRecord("k1", b"w", "{}", 1, 0), retire_others_at=1)
    assert other.config_generation() > g
    g = other.config_generation()
    st.add_signing_key(SigningKeyRecord("k2", b"w", "{}", 2, 0), retire_others_at=2)
    assert other.config_generation() > g
    st.close()
    other.close()


def test_migration_3_keeps_nodes_revoked_before_it_revoked_by_ek(
    backend: str, db_url: str, make_storage: Make
) -> None:
    from sealgate.storage import schema

    dialect: schema.Dialect = "sqlite" if backend == "sqlite" else "postgresql"
    setup: list[tuple[str, tuple[object, ...]]] = [(schema.SCHEMA_VERSION_TABLE[dialect], ())]
    for version, statements in schema.render(dialect):
        if version <= 2:
            setup += [(sql, ()) for sql in statements]
            setup.append(("INSERT INTO schema_version VALUES (?)", (version,)))
    # Two revoked nodes with one EK (two AKs), one live node.
    for node_id, ek, revoked in (("old", "old", 1), ("older", "old", 1), ("live", "live", 0)):
        setup.append(
            (
                "INSERT INTO nodes VALUES (?, 'tpm', ?, 'ca', ?, ?, 1, ?, 7)",
                (node_id, f"fp-{ek}", node_id.encode(), b"\x00", revoked),
            )
        )
    setup.append(("INSERT INTO attestations VALUES ('j', 'old', 'tpm', 'c', '{}', 'k', 1, 9)", ()))
    raw_execute(db_url, setup)
    st = make_storage()
    revs = st.list_revocations()
    assert [(r.platform, r.identity, r.node_id, r.revoked_at) for r in revs] == [
        ("tpm", "ek:fp-old", "old", 7)
    ]
    rec = st.get_attestation("j")
    assert rec is not None and rec.revocation_mark == 0


def test_revocations_are_kept_lifted_and_seq_only_grows(storage: Storage) -> None:
    from sealgate.storage import Revocation

    st = storage
    assert st.revocation_state("snp", ["chip_id:aa"]) == (0, [])
    assert st.revocation_state("snp", []) == (0, [])
    r1, new = st.add_revocation(Revocation(0, "snp", "chip_id:aa", "n", "why", 5, "op"))
    assert new and r1.seq >= 1 and r1.lifted_at == 0
    again, new = st.add_revocation(Revocation(0, "snp", "chip_id:aa", "n", "other", 6, "op"))
    assert not new and again == r1
    # Same identity string on another platform is another identity.
    r2, _ = st.add_revocation(Revocation(0, "tdx", "chip_id:aa", "", "", 6, "op"))
    assert r2.seq > r1.seq
    mark, rows = st.revocation_state("snp", ["chip_id:aa", "vcek:bb", "chip_id:aa"])
    assert mark == r2.seq and rows == [r1]
    lifted = st.lift_revocation("snp", "chip_id:aa", 8, "admin")
    assert lifted is not None and lifted.lifted_at == 8 and lifted.lifted_by == "admin"
    assert st.lift_revocation("snp", "chip_id:aa", 9, "admin") is None
    r3, new = st.add_revocation(Revocation(0, "snp", "chip_id:aa", "", "again", 10, "op"))
    assert new and r3.seq > r2.seq
    mark, rows = st.revocation_state("snp", ["chip_id:aa"])
    assert mark == r3.seq and [r.seq for r in rows] == [r1.seq, r3.seq]
    assert [r.seq for r in st.list_revocations()] == [r2.seq, r3.seq]
    assert [r.seq for r in st.list_revocations(include_lifted=True)] == [r1.seq, r2.seq, r3.seq]


def test_delete_node(storage: Storage) -> None:
    st = storage
    st.upsert_node(Node("n1", "tpm", "fp", "ca", b"name", b"pub", 1, False, 0))
    gone = st.delete_node("n1")
    assert gone is not None and gone.node_id == "n1"
    assert st.get_node("n1") is None and st.delete_node("n1") is None


def _registration(key_id: str, version: int, digest: bytes) -> ModelRegistration:
    return ModelRegistration(
        key_id, version, digest, "sha256", '{"kind":"key"}', "v1.0", "m", b"{}", 7, "op"
    )


def test_model_registrations_bind_one_model_per_key_version(make_storage: Make) -> None:
    """Migration 6: a key version is bound to one model, first writer wins, and every
    registration moves the configuration generation (appraisal caches them)."""
    st = make_storage()
    other = make_storage()
    with pytest.raises(StorageError) as e:
        st.add_model_registration(_registration("m", 1, b"\x01" * 32))
    assert e.value.code == "storage.model_key.not_found"
    st.add_key_version("m", KeyVersionRecord("m", 1, b"w" * 60, "kek", 1), "", create=True)
    st.add_key_version("m", KeyVersionRecord("m", 2, b"v" * 60, "kek", 2), "", create=False)
    gen = other.config_generation()
    first = _registration("m", 1, b"\x01" * 32)
    assert st.add_model_registration(first) == (first, True)
    assert other.config_generation() > gen
    gen = other.config_generation()
    # A second registration of the same version keeps the first, changes nothing.
    kept, new = other.add_model_registration(_registration("m", 1, b"\x02" * 32))
    assert (kept, new) == (first, False)
    assert other.config_generation() == gen
    second = _registration("m", 2, b"\x02" * 32)
    assert other.add_model_registration(second)[1]
    assert st.get_model_registration("m", 1) == first
    assert st.get_model_registration("m", 3) is None
    assert st.list_model_registrations() == [first, second]
    assert st.list_model_registrations("m") == [first, second]
    assert st.list_model_registrations("other") == []


def test_model_registrations_are_first_writer_wins_across_threads(storage: Storage) -> None:
    storage.add_key_version("m", KeyVersionRecord("m", 1, b"w" * 60, "kek", 1), "", create=True)
    results: list[bool] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        _reg, new = storage.add_model_registration(_registration("m", 1, bytes([i]) * 32))
        with lock:
            results.append(new)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 7 + [True]
    assert len(storage.list_model_registrations()) == 1

"""PostgreSQL-only behaviour: exactly-once and one audit chain across processes (replicas),
outages answered as ``storage.unavailable`` without leaking the password, and recovery
without a restart."""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sealgate import _core
from sealgate.storage import AttestationRecord, Challenge, StorageError, StorageUnavailable
from sealgate.storage.postgres import PostgresStorage
from sealgate.testing.postgres import PostgresServer

CHALLENGES = 60
PROCS = 4


def _challenge(cid: str, expires: int = 5000) -> Challenge:
    return Challenge(cid, b"\x02" * 32, "tpm", "n1", 1000, expires)


def _race_all(url: str, worker: int, q: multiprocessing.Queue[list[str]]) -> None:
    """Try to complete every challenge (in this worker's own order) with 4 threads; report
    the ones this process won."""
    st = PostgresStorage(url, pool_max=4)
    order = [f"c{i}" for i in range(CHALLENGES)]
    random.Random(worker).shuffle(order)
    won: list[str] = []
    lock = threading.Lock()

    def run(part: list[str]) -> None:
        for cid in part:
            jti = f"{cid}-{worker}"
            audit = (lambda seq, j=jti: f"{seq}:{j}".encode(), _core.audit_link)
            rec = AttestationRecord(jti, "n1", "tpm", cid, "{}", "jkt", 1000, 1300)
            if st.complete_attestation(cid, 1500, audit, rec):
                with lock:
                    won.append(cid)

    threads = [threading.Thread(target=run, args=(order[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    st.close()
    q.put(won)


def _spawn(target: object, args: list[tuple[object, ...]]) -> list[list[str]]:
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[list[str]] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, q)) for a in args]  # type: ignore[arg-type]
    for p in procs:
        p.start()
    try:
        return [q.get(timeout=180) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)


def test_each_challenge_completes_exactly_once_across_processes(pg_url: str) -> None:
    st = PostgresStorage(pg_url)
    for i in range(CHALLENGES):
        st.create_challenge(_challenge(f"c{i}"))
    results = _spawn(_race_all, [(pg_url, w) for w in range(PROCS)])
    won = [cid for r in results for cid in r]
    assert sorted(won) == sorted(f"c{i}" for i in range(CHALLENGES))  # each once, none lost
    # Exactly one attestation row and one audit entry per challenge; losers wrote nothing.
    assert (
        sum(st.get_attestation(f"c{i}-{w}") is not None for i in range(60) for w in range(4)) == 60
    )
    rows = st.list_audit(0, 1000)
    assert [r.seq for r in rows] == list(range(1, CHALLENGES + 1))
    assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None
    st.close()


APPENDS = 40


def _append_many(url: str, worker: int, q: multiprocessing.Queue[list[str]]) -> None:
    st = PostgresStorage(url, pool_max=4)

    def run(t: int) -> None:
        for i in range(APPENDS):
            tag = f"w{worker}t{t}i{i}"
            audit = (lambda seq, g=tag: f"{seq}:{g}".encode(), _core.audit_link)
            kind = i % 3
            if kind == 0:
                st.append_audit(*audit)
            elif kind == 1:
                st.create_challenge(_challenge(tag), audit)
            else:
                st.create_challenge(_challenge(tag))
                assert st.complete_attestation(tag, 1500, audit)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    st.close()
    q.put([])


def test_audit_chain_stays_linear_with_writers_in_many_processes(pg_url: str) -> None:
    """4 processes x 4 threads append through every audit path at once: one chain, seq
    1..N with no gap or duplicate, every link verifying, every entry present once."""
    PostgresStorage(pg_url).close()
    _spawn(_append_many, [(pg_url, w) for w in range(PROCS)])
    st = PostgresStorage(pg_url)
    rows = [r for page in st.iter_audit(batch=100) for r in page]
    total = PROCS * 4 * APPENDS
    assert [r.seq for r in rows] == list(range(1, total + 1))
    assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None
    tags = sorted(r.entry.split(b":", 1)[1].decode() for r in rows)
    expected = sorted(
        f"w{w}t{t}i{i}" for w in range(PROCS) for t in range(4) for i in range(APPENDS)
    )
    assert tags == expected
    # Every entry was encoded for the seq it got (make_entry saw its own number).
    assert all(r.entry.startswith(f"{r.seq}:".encode()) for r in rows)
    st.close()


def test_seq_is_the_backstop_against_a_fork(pg_url: str) -> None:
    """Even a writer that bypassed the lock could not commit a second entry at a seq."""
    st = PostgresStorage(pg_url)
    st.append_audit(lambda seq: b"one", _core.audit_link)
    with psycopg.connect(pg_url) as c, pytest.raises(psycopg.errors.UniqueViolation):
        c.execute("INSERT INTO audit (seq, entry, hash) VALUES (1, 'x', 'y')")
    st.close()


def _quiet_secret(server: PostgresServer) -> str:
    return server._password


def test_outage_is_unavailable_fast_redacted_and_recovers(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    st = PostgresStorage(pg_url, pool_timeout=1.5)
    st.create_challenge(_challenge("before"))
    password = _quiet_secret(postgres_server)
    try:
        postgres_server.stop()
        for call in (
            lambda: st.config_generation(),
            lambda: st.create_challenge(_challenge("during")),
            lambda: st.complete_attestation("before", 1500, (lambda seq: b"x", _core.audit_link)),
        ):
            t0 = time.monotonic()
            with pytest.raises(StorageUnavailable) as e:
                call()
            assert time.monotonic() - t0 < 2.5
            assert e.value.code == "storage.unavailable"
            text = f"{e.value} {e.value.message} {e.value!r}"
            assert password not in text and "password" not in text.lower()
            assert "sealgate@127.0.0.1" in text  # the redacted URL names the database
        postgres_server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                assert st.consume_challenge("before", 1500) is not None
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "no recovery within 15 s"
                time.sleep(0.1)
        # Nothing of the failed calls was committed.
        assert st.get_challenge("during", 1500) is None
        assert st.list_audit() == []
    finally:
        if not postgres_server.running:
            postgres_server.start()
        st.close()


def test_server_restart_between_calls_costs_no_call(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    """Idle pooled connections killed by a restart are noticed at checkout (no round trip)
    and replaced: the first call after the restart already works."""
    st = PostgresStorage(pg_url, pool_min=4)
    try:
        for i in range(8):  # warm several connections
            st.config_generation()
            st.create_challenge(_challenge(f"w{i}"))
        postgres_server.restart()
        time.sleep(0.2)
        assert st.get_challenge("w0", 1500) is not None
        assert st.consume_challenge("w1", 1500) is not None
    finally:
        st.close()


def test_terminated_session_inside_atomic_is_unavailable_and_rolled_back(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    st = PostgresStorage(pg_url)
    name = pg_url.rsplit("/", 1)[1]
    try:
        with pytest.raises(StorageUnavailable), st.atomic():
            st.put_policy("k", "{}", 1)
            postgres_server.terminate_backends(name)
            time.sleep(0.2)
            st.append_audit(lambda seq: b"x", _core.audit_link)
        assert st.get_policy("k") is None and st.list_audit() == []
        st.put_policy("k", "{}", 2)  # and the storage still works
        assert st.get_policy("k") is not None
    finally:
        st.close()


def test_pool_exhaustion_is_unavailable(pg_url: str) -> None:
    st = PostgresStorage(pg_url, pool_min=1, pool_max=1, pool_timeout=0.5)
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with st.atomic():
            st.config_generation()
            entered.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert entered.wait(10)
        with pytest.raises(StorageUnavailable) as e:
            st.config_generation()
        assert "pool timeout" in e.value.message
    finally:
        release.set()
        t.join(10)
        st.close()


def test_wrong_password_is_unavailable_without_leaking(tmp_path: Path, pg_url: str) -> None:
    bad = tmp_path / "bad.pgpass"
    secret = "s3cret-not-the-right-one"
    bad.write_text(f"*:*:*:*:{secret}\n")
    os.chmod(bad, 0o600)
    with pytest.raises(StorageError) as e:
        PostgresStorage(pg_url + f"?passfile={bad}", pool_timeout=1.0)
    assert e.value.code == "storage.unavailable"
    assert secret not in str(e.value)


def test_closed_storage_refuses(pg_url: str) -> None:
    st = PostgresStorage(pg_url)
    st.close()
    with pytest.raises(StorageError) as e:
        st.config_generation()
    assert e.value.code == "storage.closed"


def test_constraint_errors_have_codes(pg_url: str) -> None:
    st = PostgresStorage(pg_url)
    st.create_challenge(_challenge("dup"))
    with pytest.raises(StorageError) as e:
        st.create_challenge(_challenge("dup"))
    assert e.value.code == "storage.constraint"
    st.close()


def test_a_nul_in_text_is_a_coded_refusal(pg_url: str) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): a client-chosen id with one is refused
    with a code, not an unhandled driver error."""
    st = PostgresStorage(pg_url)
    with pytest.raises(StorageError) as e:
        st.create_challenge(Challenge("c", b"n", "tpm", "node\x00id", 1, 2))
    assert e.value.code == "storage.value.invalid"
    assert st.get_challenge("c", 1) is None
    st.close()

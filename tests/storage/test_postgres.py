"""PostgreSQL-only behaviour: exactly-once and one audit chain across processes (replicas),
outages answered as ``storage.unavailable`` without leaking the password, and recovery
without a restart."""

from __future__ import annotations

import functools
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import pytest
from sealgate import _core
from sealgate.storage import (
    AttestationRecord,
    AuditAppend,
    Challenge,
    StorageError,
    StorageUnavailable,
)
from sealgate.storage.postgres import PostgresStorage
from sealgate.testing.postgres import PostgresServer

CHALLENGES = 60
PROCS = 4


def _challenge(cid: str, expires: int = 5000) -> Challenge:
    return Challenge(cid, b"\x02" * 32, "tpm", "n1", 1000, expires)


def _race_all(url: str, worker: int, pipeline: bool, q: multiprocessing.Queue[list[str]]) -> None:
    """Try to complete every challenge (in this worker's own order) with 4 threads; report
    the ones this process won."""
    st = PostgresStorage(url, pool_max=4, pipeline=pipeline)
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


@pytest.mark.parametrize("pipeline", [False, True])
def test_each_challenge_completes_exactly_once_across_processes(
    pg_url: str, pipeline: bool
) -> None:
    st = PostgresStorage(pg_url)
    for i in range(CHALLENGES):
        st.create_challenge(_challenge(f"c{i}"))
    results = _spawn(_race_all, [(pg_url, w, pipeline) for w in range(PROCS)])
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


def _append_many(
    url: str, worker: int, pipeline: bool, q: multiprocessing.Queue[list[str]]
) -> None:
    st = PostgresStorage(url, pool_max=4, pipeline=pipeline)

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


@pytest.mark.parametrize("pipeline", [False, True])
def test_audit_chain_stays_linear_with_writers_in_many_processes(
    pg_url: str, pipeline: bool
) -> None:
    """4 processes x 4 threads append through every audit path at once: one chain, seq
    1..N with no gap or duplicate, every link verifying, every entry present once."""
    PostgresStorage(pg_url).close()
    _spawn(_append_many, [(pg_url, w, pipeline) for w in range(PROCS)])
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


# -- group commit (audited challenge creation and completion outside atomic()) ------------


def _gate() -> tuple[threading.Event, threading.Event, Callable[[int], bytes]]:
    """An audit ``make_entry`` that parks the committer inside its batch (after the head
    read, audit lock held) until released: callers queue up behind it meanwhile."""
    entered = threading.Event()
    release = threading.Event()

    def make_entry(seq: int) -> bytes:
        entered.set()
        assert release.wait(30)
        return f"{seq}:gate".encode()

    return entered, release, make_entry


def _queue_behind_gate(
    st: PostgresStorage, calls: Sequence[Callable[[], object]], timeout: float = 30
) -> tuple[list[object], list[threading.Thread], threading.Event]:
    """Start the gate job, then ``calls`` (each in a thread) once the gate holds the
    committer; return the result slots, the threads and the release event."""
    entered, release, gate = _gate()
    st.create_challenge(_challenge("gated"))
    results: list[object] = [None] * (len(calls) + 1)

    def run(k: int, fn: Callable[[], object]) -> None:
        try:
            results[k] = fn()
        except BaseException as e:
            results[k] = e

    gate_call = lambda: st.complete_attestation("gated", 1500, (gate, _core.audit_link))  # noqa: E731
    threads = [threading.Thread(target=run, args=(0, gate_call))]
    threads[0].start()
    assert entered.wait(timeout)
    for k, fn in enumerate(calls, 1):
        threads.append(threading.Thread(target=run, args=(k, fn)))
        threads[-1].start()
    committer = st._committer
    assert committer is not None
    deadline = time.monotonic() + timeout
    while committer._q.qsize() < len(calls):
        assert time.monotonic() < deadline, "jobs did not queue"
        time.sleep(0.01)
    return results, threads, release


def _audit(tag: str) -> AuditAppend:
    return (lambda seq, t=tag: f"{seq}:{t}".encode(), _core.audit_link)


def test_one_winner_among_many_threads_and_batches_share_a_commit(pg_url: str) -> None:
    """32 threads complete one challenge at once (most of them in one batch): exactly one
    wins; one attestation row and one audit entry; the losers wrote nothing."""
    st = PostgresStorage(pg_url)
    try:
        st.create_challenge(_challenge("same"))
        calls: list[Callable[[], object]] = [
            functools.partial(
                st.complete_attestation,
                "same",
                1500,
                _audit(f"t{k}"),
                AttestationRecord(f"j{k}", "n1", "tpm", "same", "{}", "jkt", 1000, 1300),
            )
            for k in range(32)
        ]
        results, threads, release = _queue_behind_gate(st, calls)
        release.set()
        for t in threads:
            t.join(30)
        assert results[0] is True  # the gate's own challenge
        assert all(isinstance(r, bool) for r in results), results
        assert sum(r is True for r in results[1:]) == 1
        winner = results.index(True, 1) - 1
        jtis = [k for k in range(32) if st.get_attestation(f"j{k}") is not None]
        assert jtis == [winner]
        rows = st.list_audit(0, 100)
        assert [r.entry.split(b":", 1)[1] for r in rows] == [b"gate", f"t{winner}".encode()]
        assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None
        # They were queued together: the 32 shared far fewer commits than 32.
        committer = st._committer
        assert committer is not None and committer.batches <= 4 < committer.jobs
    finally:
        st.close()


def test_a_failing_make_entry_does_not_sink_the_batch(pg_url: str) -> None:
    st = PostgresStorage(pg_url)
    try:
        for k in range(8):
            st.create_challenge(_challenge(f"ok{k}"))
        st.create_challenge(_challenge("bad"))

        def boom(seq: int) -> bytes:
            raise RuntimeError("entry cannot be encoded")

        calls: list[Callable[[], object]] = [
            functools.partial(st.complete_attestation, f"ok{k}", 1500, _audit(f"ok{k}"))
            for k in range(8)
        ]
        calls.insert(3, lambda: st.complete_attestation("bad", 1500, (boom, _core.audit_link)))
        calls.append(lambda: st.create_challenge(_challenge("new"), _audit("new")))
        results, threads, release = _queue_behind_gate(st, calls)
        release.set()
        for t in threads:
            t.join(30)
        assert results[0] is True
        assert isinstance(results[4], RuntimeError)  # the bad job's own error, to its caller
        assert [r for k, r in enumerate(results[1:], 1) if k != 4] == [True] * 8 + [None]
        # The bad one rolled back alone: its challenge is still live, and the chain holds
        # the gate and the nine others, linked, each once.
        assert st.get_challenge("bad", 1500) is not None
        assert st.get_challenge("new", 1500) is not None
        rows = st.list_audit(0, 100)
        assert [r.seq for r in rows] == list(range(1, 11))
        assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None
        tags = sorted(r.entry.split(b":", 1)[1].decode() for r in rows)
        assert tags == sorted(["gate", "new", *(f"ok{k}" for k in range(8))])
    finally:
        st.close()


def test_server_stopped_mid_batch_fails_every_waiter_promptly(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    """The batch in flight (its outcome unknown) and those queued behind it all get
    storage.unavailable, within the pool timeout and a few seconds, never True."""
    st = PostgresStorage(pg_url, pool_timeout=1.5)
    try:
        for k in range(6):
            st.create_challenge(_challenge(f"c{k}"))
        calls: list[Callable[[], object]] = [
            functools.partial(st.complete_attestation, f"c{k}", 1500, _audit(f"c{k}"))
            for k in range(6)
        ]
        results, threads, release = _queue_behind_gate(st, calls)
        postgres_server.stop_fast()
        t0 = time.monotonic()
        release.set()
        for t in threads:
            t.join(30)
        assert time.monotonic() - t0 < 6
        for r in results:
            assert isinstance(r, StorageUnavailable), r
            assert r.code == "storage.unavailable"
            assert _quiet_secret(postgres_server) not in f"{r} {r!r}"
    finally:
        if not postgres_server.running:
            postgres_server.start()
        st.close()
    # Nothing of the gated batch committed; the queued ones never ran against a server.
    st = PostgresStorage(pg_url)
    try:
        assert st.list_audit() == []
        assert st.get_challenge("gated", 1500) is not None
    finally:
        st.close()


def test_close_commits_the_queued_jobs_then_refuses(pg_url: str) -> None:
    st = PostgresStorage(pg_url)
    for k in range(5):
        st.create_challenge(_challenge(f"q{k}"))
    calls: list[Callable[[], object]] = [
        functools.partial(st.complete_attestation, f"q{k}", 1500, _audit(f"q{k}")) for k in range(5)
    ]
    results, threads, release = _queue_behind_gate(st, calls)
    closer = threading.Thread(target=st.close)
    closer.start()
    time.sleep(0.2)
    release.set()
    for t in [*threads, closer]:
        t.join(30)
    assert results == [True] * 6
    with pytest.raises(StorageError) as e:
        st.complete_attestation("q0", 1500, _audit("late"))
    assert e.value.code == "storage.closed"
    st = PostgresStorage(pg_url)
    try:
        assert [r.seq for r in st.list_audit()] == list(range(1, 7))
    finally:
        st.close()


def test_bad_values_in_a_batch_get_their_own_coded_refusal(pg_url: str) -> None:
    """A NUL in an audited challenge (the batch's JSON carries it as \\u0000, which
    PostgreSQL refuses) and a duplicate id: each caller gets its own code from the one-by-one
    fallback, and the good job queued with them commits."""
    st = PostgresStorage(pg_url)
    try:
        st.create_challenge(_challenge("dup"))
        calls: list[Callable[[], object]] = [
            functools.partial(
                st.create_challenge, Challenge("c", b"n", "tpm", "node\x00id", 1, 2), _audit("nul")
            ),
            functools.partial(st.create_challenge, _challenge("dup"), _audit("dup")),
            functools.partial(st.create_challenge, _challenge("fine"), _audit("fine")),
        ]
        results, threads, release = _queue_behind_gate(st, calls)
        release.set()
        for t in threads:
            t.join(30)
        assert results[0] is True and results[3] is None
        assert isinstance(results[1], StorageError) and results[1].code == "storage.value.invalid"
        assert isinstance(results[2], StorageError) and results[2].code == "storage.constraint"
        assert st.get_challenge("c", 1) is None and st.get_challenge("fine", 1500) is not None
        tags = sorted(r.entry.split(b":", 1)[1] for r in st.list_audit())
        assert tags == [b"fine", b"gate"]
    finally:
        st.close()

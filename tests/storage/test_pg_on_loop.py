"""PostgreSQL storage called on the asyncio event loop through ``sealgate.storage.bridge``
(the service's hot path on a remote database): the loop keeps running while calls wait for
the server, concurrent calls interleave on one thread, each keeps its own ``atomic()``, the
group committer answers loop callers, and the semantics (single use, one audit chain,
coded failures) are those of thread callers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from sealgate import _core
from sealgate.storage import (
    AttestationRecord,
    AuditAppend,
    Challenge,
    StorageUnavailable,
    bridge,
)
from sealgate.storage.postgres import PostgresStorage
from sealgate.testing.postgres import PostgresServer


def _challenge(cid: str) -> Challenge:
    return Challenge(cid, b"\x02" * 32, "tpm", "n1", 1000, 5000)


def _audit(tag: str) -> AuditAppend:
    return (lambda seq, t=tag: f"{seq}:{t}".encode(), _core.audit_link)


def _on_loop(*calls: Callable[[], Any]) -> list[Any]:
    async def main() -> list[Any]:
        return list(await asyncio.gather(*(bridge.run(c) for c in calls), return_exceptions=True))

    return asyncio.run(main())


def test_wait_outside_run_is_refused() -> None:
    assert not bridge.active()

    async def coro() -> None:
        pass

    aw = coro()
    with pytest.raises(RuntimeError):
        bridge.wait(aw)
    aw.close()


def test_run_passes_results_and_exceptions_through() -> None:
    async def later(v: int) -> int:
        await asyncio.sleep(0.01)
        return v

    def ok() -> int:
        assert bridge.active()
        return bridge.wait(later(2)) + bridge.wait(later(3))

    def bad() -> None:
        bridge.wait(later(1))
        raise ValueError("x")

    r = _on_loop(ok, bad)
    assert r[0] == 5 and isinstance(r[1], ValueError)
    assert bridge.offload(lambda: 7) == 7  # off the loop: a direct call


def test_the_loop_runs_while_calls_wait_for_the_server(pg_url: str) -> None:
    """Eight calls each sleeping 0.3 s in the server finish in about 0.3 s on ONE thread,
    and a ticker coroutine keeps ticking meanwhile: nothing blocked the loop."""
    st = PostgresStorage(pg_url, pool_max=12)
    try:
        st.config_generation()  # warm the pool

        def slow() -> int:
            return int(st._q("SELECT 1 FROM pg_sleep(0.3)")[0][0])

        async def main() -> tuple[list[int], int, float]:
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            t = asyncio.create_task(ticker())
            t0 = time.monotonic()
            out = await asyncio.gather(*(bridge.run(slow) for _ in range(8)))
            took = time.monotonic() - t0
            stop.set()
            await t
            return list(out), ticks, took

        out, ticks, took = asyncio.run(main())
        assert out == [1] * 8
        assert took < 2.0, took  # one after the other would be 2.4 s
        assert ticks >= 10, ticks
    finally:
        st.close()


def test_atomic_is_per_call_on_one_thread(pg_url: str) -> None:
    """Two calls interleaved on the loop, each inside its own ``atomic()``: one rolls back,
    the other commits, and neither's statements land in the other's transaction."""
    st = PostgresStorage(pg_url)
    try:

        def commits() -> None:
            with st.atomic():
                st.create_challenge(_challenge("a1"))
                st._q("SELECT pg_sleep(0.1)")
                st.create_challenge(_challenge("a2"))

        def rolls_back() -> None:
            with st.atomic():
                st.create_challenge(_challenge("b1"))
                st._q("SELECT pg_sleep(0.05)")
                raise KeyError("undo")

        r = _on_loop(commits, rolls_back)
        assert r[0] is None and isinstance(r[1], KeyError)
        assert st.get_challenge("a1", 1500) is not None
        assert st.get_challenge("a2", 1500) is not None
        assert st.get_challenge("b1", 1500) is None
    finally:
        st.close()


def test_group_commit_answers_loop_callers_one_winner(pg_url: str) -> None:
    """32 loop calls complete one challenge at once through the committer: exactly one
    wins, one attestation row and one audit entry, and the chain verifies."""
    st = PostgresStorage(pg_url)
    try:
        st.create_challenge(_challenge("same"))

        def complete(k: int) -> Callable[[], bool]:
            rec = AttestationRecord(f"j{k}", "n1", "tpm", "same", "{}", "jkt", 1000, 1300)
            return lambda: st.complete_attestation("same", 1500, _audit(f"t{k}"), rec)

        creates = [
            (lambda k=k: st.create_challenge(_challenge(f"c{k}"), _audit(f"c{k}")))
            for k in range(16)
        ]
        results = _on_loop(*(complete(k) for k in range(32)), *creates)
        assert all(isinstance(r, bool) for r in results[:32]), results
        assert sum(results[:32]) == 1
        assert results[32:] == [None] * 16
        winner = results.index(True)
        assert [k for k in range(32) if st.get_attestation(f"j{k}")] == [winner]
        rows = st.list_audit(0, 100)
        assert len(rows) == 17
        assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None
        committer = st._committer
        assert committer is not None and committer.batches < committer.jobs
    finally:
        st.close()


def test_a_cold_pool_is_waited_for_off_the_loop(pg_url: str) -> None:
    """More concurrent loop calls than connections: the extra ones wait for a connection in
    a worker thread (the loop keeps serving), and all succeed."""
    st = PostgresStorage(pg_url, pool_min=0, pool_max=2)
    try:

        def read() -> int:
            return int(st._q("SELECT 1 FROM pg_sleep(0.05)")[0][0])

        assert _on_loop(*([read] * 10)) == [1] * 10
    finally:
        st.close()


def test_outage_on_the_loop_is_unavailable_and_recovers(
    pg_url: str, postgres_server: PostgresServer
) -> None:
    st = PostgresStorage(pg_url, pool_timeout=1.0)
    try:
        st.config_generation()
        postgres_server.stop()
        t0 = time.monotonic()
        r = _on_loop(
            st.config_generation,
            lambda: st.create_challenge(_challenge("x"), _audit("x")),
            lambda: st.attest_inputs("x", "n1", 2000),
        )
        assert all(isinstance(e, StorageUnavailable) for e in r), r
        assert time.monotonic() - t0 < 10
        postgres_server.start()
        deadline = time.monotonic() + 30
        while True:
            r = _on_loop(st.config_generation)
            if isinstance(r[0], int):
                break
            assert time.monotonic() < deadline, r
            time.sleep(0.2)
    finally:
        if not postgres_server.running:
            postgres_server.start()
        st.close()


def test_a_cancelled_drain_fails_its_jobs_and_stops(pg_url: str) -> None:
    """The loop's committer drain cancelled mid-batch (its loop closing): the jobs of that
    batch fail as unavailable (outcome unknown), the cancellation is not swallowed, and the
    next loop call starts a fresh drain that commits."""
    st = PostgresStorage(pg_url)
    try:
        committer = st._committer
        assert committer is not None

        def create(k: int) -> Callable[[], None]:
            return lambda: st.create_challenge(_challenge(f"k{k}"), _audit(f"k{k}"))

        async def main() -> tuple[list[Any], bool]:
            loop = asyncio.get_running_loop()
            calls = [asyncio.create_task(bridge.run(create(k))) for k in range(4)]
            await asyncio.sleep(0)  # the calls queue their jobs and start the drain
            drain = committer._drains[loop]
            task = drain.task
            assert task is not None
            await asyncio.sleep(0)  # the drain starts its first round trip
            task.cancel()
            out = await asyncio.gather(*calls, return_exceptions=True)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return out, task.cancelled() and drain.task is None

        out, cancelled = asyncio.run(main())
        assert cancelled
        assert all(isinstance(r, StorageUnavailable) or r is None for r in out), out
        # A new loop, a new drain: commits as usual, and the chain is intact.
        assert _on_loop(lambda: st.create_challenge(_challenge("after"), _audit("after"))) == [None]
        rows = st.list_audit(0, 100)
        assert rows[-1].entry.endswith(b":after")
        assert _core.audit_verify([r.entry for r in rows], [r.hash for r in rows]) is None
    finally:
        st.close()


def test_the_drain_waits_for_calls_still_running_to_join_its_batch(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight calls on one loop queue their writes a little apart: the drain started by the
    first waits for the other seven, so all share one commit, and stops waiting as soon as
    the last has queued (not at ``GATHER_DELAY``). A lone call does not wait at all."""
    from sealgate.storage import postgres

    st = PostgresStorage(pg_url)
    try:
        committer = st._committer
        assert committer is not None
        st.config_generation()  # warm the pool
        monkeypatch.setattr(postgres, "GATHER_DELAY", 30.0)

        async def late(k: int) -> None:
            await asyncio.sleep(0.02 * k)

        def call(k: int) -> Callable[[], None]:
            def run() -> None:
                bridge.wait(late(k))
                st.create_challenge(_challenge(f"j{k}"), _audit(f"j{k}"))

            return run

        before = committer.batches
        t0 = time.monotonic()
        assert _on_loop(*(call(k) for k in range(8))) == [None] * 8
        assert time.monotonic() - t0 < 15
        assert committer.batches - before == 1
        assert len(st.list_audit(0, 100)) == 8

        t0 = time.monotonic()
        assert _on_loop(lambda: st.create_challenge(_challenge("lone"), _audit("lone"))) == [None]
        assert time.monotonic() - t0 < 15
    finally:
        st.close()

#!/usr/bin/env python3
"""PostgreSQL driver choice, by measurement: psycopg 3 (sync, ``psycopg_pool``, from threads)
against asyncpg (its pool, on one asyncio loop) on sealgate's hot-path transactions.

Each driver runs the same statements with the same round trips (one per statement,
server-side prepared statements on both, the same pool size), against a throwaway
PostgreSQL (``sealgate.testing.postgres``; fsync on unless ``--no-fsync``) or ``--url``:

* ``create``: INSERT a challenge + audit append (advisory lock, head read, INSERT) in one
  transaction;
* ``complete``: conditional UPDATE of the challenge + INSERT attestation + audit append;
* ``revocation``: the one-statement ``revocation_state`` read;
* ``generation``: the ``config_generation`` read;
* ``flow``: the four in sequence (one attestation's storage work).

The ``sealgate`` rows run the same flow through ``PostgresStorage`` itself, with and
without ``pipeline=True`` (psycopg pipeline mode: two round trips per write
transaction). Every phase is bounded by ``--ops`` per worker and ``--seconds``. Prints
ops/s, p50/p99 latency, client CPU per op, the asyncpg/psycopg ratio, and the CPU model
from /proc/cpuinfo.

    PYTHONPATH=python .venv/bin/python scripts/bench_pg_driver.py [--no-fsync] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
from sealgate import _core
from sealgate.storage import AttestationRecord, Challenge
from sealgate.storage.postgres import AUDIT_LOCK, PostgresStorage
from sealgate.testing.machine import cpu_model
from sealgate.testing.postgres import PostgresServer, available

ENTRY = bytes(180)
OPS = ("create", "complete", "revocation", "generation", "flow")

S_CHALLENGE = (
    "INSERT INTO challenges (id, nonce, platform, node_id, created_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
S_LOCK = "SELECT pg_advisory_xact_lock($1)"
S_HEAD = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
S_AUDIT = "INSERT INTO audit (seq, entry, hash) VALUES ($1, $2, $3)"
S_USE = "UPDATE challenges SET used = 1 WHERE id = $1 AND used = 0 AND expires_at > $2 RETURNING id"
S_ATT = (
    "INSERT INTO attestations (jti, node_id, platform, challenge_id, claims, runtime_key_jkt,"
    " issued_at, expires_at, granted_keys, revocation_mark)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
S_REV = (
    "SELECT (SELECT COALESCE(MAX(seq), 0) FROM revocations), r.seq, r.platform, r.identity,"
    " r.node_id, r.reason, r.revoked_at, r.revoked_by, r.lifted_at, r.lifted_by"
    " FROM (SELECT 1) AS one LEFT JOIN revocations r"
    " ON r.platform = $1 AND r.identity = ANY($2::text[]) ORDER BY r.seq"
)
S_GEN = "SELECT generation FROM config_generation"


def pg(sql: str) -> str:
    """asyncpg's $n placeholders as psycopg's %s (same statement text otherwise)."""
    import re

    return re.sub(r"\$\d+", "%s", sql)


class Ids:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._n += 1
            return f"{self.prefix}{self._n}"


def _link(head: Any) -> tuple[int, bytes, bytes]:
    seq = int(head[0]) + 1 if head else 1
    prev = bytes(head[1]) if head else bytes(32)
    return seq, ENTRY, _core.audit_link(prev, ENTRY)


def _att_args(cid: str) -> tuple[Any, ...]:
    return (cid, "n1", "tpm", cid, "{}", "jkt", 1000, 1300, "[]", 0)


# -- psycopg (sync, threads) --------------------------------------------------------------
class Psycopg:
    name = "psycopg"

    def __init__(self, url: str, pool: int) -> None:
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=pool,
            max_size=pool,
            kwargs={"autocommit": True, "prepare_threshold": 0},
            open=True,
        )
        self.pool.wait(30)

    def _audit(self, c: psycopg.Connection[Any]) -> None:
        c.execute(pg(S_LOCK), (AUDIT_LOCK,))
        c.execute(pg(S_AUDIT), _link(c.execute(pg(S_HEAD)).fetchone()))

    def create(self, cid: str) -> None:
        with self.pool.connection() as c, c.transaction():
            c.execute(pg(S_CHALLENGE), (cid, b"\x01" * 32, "tpm", "n1", 1000, 5000))
            self._audit(c)

    def complete(self, cid: str) -> None:
        with self.pool.connection() as c, c.transaction():
            if c.execute(pg(S_USE), (cid, 1500)).fetchone() is None:
                raise RuntimeError("challenge not live")
            c.execute(pg(S_ATT), _att_args(cid))
            self._audit(c)

    def revocation(self, cid: str) -> None:
        with self.pool.connection() as c:
            c.execute(pg(S_REV), ("tpm", ["ek:aa", "ak:bb"])).fetchall()

    def generation(self, cid: str) -> None:
        with self.pool.connection() as c:
            c.execute(pg(S_GEN)).fetchone()

    def flow(self, cid: str) -> None:
        self.create(cid)
        self.generation(cid)
        self.revocation(cid)
        self.complete(cid)

    def close(self) -> None:
        self.pool.close()


class Sealgate(Psycopg):
    """The flow through PostgresStorage itself."""

    name = "sealgate"
    pipeline = False

    def __init__(self, url: str, pool: int) -> None:
        self.st = PostgresStorage(url, pool_min=pool, pool_max=pool, pipeline=self.pipeline)
        self._audit_append = (lambda seq: ENTRY, _core.audit_link)

    def create(self, cid: str) -> None:
        self.st.create_challenge(
            Challenge(cid, b"\x01" * 32, "tpm", "n1", 1000, 5000), self._audit_append
        )

    def complete(self, cid: str) -> None:
        rec = AttestationRecord(cid, "n1", "tpm", cid, "{}", "jkt", 1000, 1300)
        if not self.st.complete_attestation(cid, 1500, self._audit_append, rec):
            raise RuntimeError("challenge not live")

    def revocation(self, cid: str) -> None:
        self.st.revocation_state("tpm", ["ek:aa", "ak:bb"])

    def generation(self, cid: str) -> None:
        self.st.config_generation()

    def close(self) -> None:
        self.st.close()


class SealgatePipeline(Sealgate):
    """PostgresStorage with pipeline=True (two round trips per write transaction)."""

    name = "sealgate-pipeline"
    pipeline = True


def run_threads(
    impl: Psycopg, op: str, workers: int, ops: int, seconds: float, ids: list[str]
) -> dict[str, Any]:
    fn: Callable[[str], None] = getattr(impl, op)
    lat: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    it = iter(ids)

    def work() -> None:
        mine: list[float] = []
        for _ in range(ops):
            if time.monotonic() > deadline:
                break
            with lock:
                cid = next(it, None)
            if cid is None:
                break
            t0 = time.perf_counter()
            fn(cid)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    cpu0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _stats(lat, time.perf_counter() - t0, time.process_time() - cpu0)


# -- asyncpg (one loop) -------------------------------------------------------------------
async def _no_reset(conn: Any) -> None:
    return None


class Asyncpg:
    name = "asyncpg"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str, size: int) -> Asyncpg:
        # asyncpg prepares and caches every statement per connection (statement_cache_size).
        # reset: by default asyncpg's pool sends a reset query (RESET ALL, UNLISTEN, advisory
        # unlock) on every release, one more round trip; psycopg_pool only rolls back an
        # open transaction, which asyncpg's release still does (Connection._reset).
        pool = await asyncpg.create_pool(url, min_size=size, max_size=size, reset=_no_reset)
        return cls(pool)

    async def _audit(self, c: Any) -> None:
        await c.execute(S_LOCK, AUDIT_LOCK)
        await c.execute(S_AUDIT, *_link(await c.fetchrow(S_HEAD)))

    async def create(self, cid: str) -> None:
        async with self.pool.acquire() as c, c.transaction():
            await c.execute(S_CHALLENGE, cid, b"\x01" * 32, "tpm", "n1", 1000, 5000)
            await self._audit(c)

    async def complete(self, cid: str) -> None:
        async with self.pool.acquire() as c, c.transaction():
            if await c.fetchrow(S_USE, cid, 1500) is None:
                raise RuntimeError("challenge not live")
            await c.execute(S_ATT, *_att_args(cid))
            await self._audit(c)

    async def revocation(self, cid: str) -> None:
        async with self.pool.acquire() as c:
            await c.fetch(S_REV, "tpm", ["ek:aa", "ak:bb"])

    async def generation(self, cid: str) -> None:
        async with self.pool.acquire() as c:
            await c.fetchrow(S_GEN)

    async def flow(self, cid: str) -> None:
        await self.create(cid)
        await self.generation(cid)
        await self.revocation(cid)
        await self.complete(cid)


async def run_tasks(
    impl: Asyncpg, op: str, workers: int, ops: int, seconds: float, ids: list[str]
) -> dict[str, Any]:
    fn: Callable[[str], Awaitable[None]] = getattr(impl, op)
    lat: list[float] = []
    deadline = time.monotonic() + seconds
    it = iter(ids)

    async def work() -> None:
        for _ in range(ops):
            if time.monotonic() > deadline:
                break
            cid = next(it, None)
            if cid is None:
                break
            t0 = time.perf_counter()
            await fn(cid)
            lat.append(time.perf_counter() - t0)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(work() for _ in range(workers)))
    return _stats(lat, time.perf_counter() - t0, time.process_time() - cpu0)


def _stats(lat: list[float], wall: float, cpu: float) -> dict[str, Any]:
    if not lat:
        return {"ops": 0}
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return {
        "ops": len(lat),
        "ops_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "client_cpu_us_per_op": round(cpu / len(lat) * 1e6, 1),
    }


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("TRUNCATE challenges, attestations, audit")
        c.execute("VACUUM ANALYZE challenges, attestations, audit")


def _phases(driver: str, workers: int, ops: int) -> list[tuple[str, list[str], list[str]]]:
    """(op, warm-up ids, measured ids) per phase: "complete" consumes what "create" made."""
    n = workers * ops
    out = []
    for op in OPS:
        if driver.startswith("sealgate") and op != "flow":
            continue
        tag = "f" if op == "flow" else ""
        out.append((op, [f"w{tag}{i}" for i in range(64)], [f"m{tag}{i}" for i in range(n)]))
    return out


def bench(
    url: str, workers_list: list[int], ops: int, seconds: float, pool: int
) -> list[dict[str, Any]]:
    PostgresStorage(url).close()  # the schema
    results: list[dict[str, Any]] = []
    for workers in workers_list:
        for driver in ("psycopg", "asyncpg", "sealgate", "sealgate-pipeline"):
            reset(url)
            phases = _phases(driver, workers, ops)
            # One pool per driver and concurrency, every statement warmed on every
            # connection first (both drivers prepare per connection; asyncpg also
            # introspects the array type on first use), so the phases measure steady state.
            if driver == "asyncpg":

                async def go(
                    phases: list[tuple[str, list[str], list[str]]] = phases, workers: int = workers
                ) -> list[Any]:
                    impl = await Asyncpg.open(url, pool)
                    out = []
                    try:
                        for op, warm, ids in phases:
                            await run_tasks(impl, op, pool, 4, seconds, warm)
                            out.append(await run_tasks(impl, op, workers, ops, seconds, ids))
                    finally:
                        await impl.pool.close()
                    return out

                rows = asyncio.run(go())
            else:
                cls = {"psycopg": Psycopg, "sealgate": Sealgate}.get(driver, SealgatePipeline)
                impl: Psycopg = cls(url, pool)
                rows = []
                try:
                    for op, warm, ids in phases:
                        run_threads(impl, op, pool, 4, seconds, warm)
                        rows.append(run_threads(impl, op, workers, ops, seconds, ids))
                finally:
                    impl.close()
            for (op, _, _), r in zip(phases, rows, strict=True):
                r.update(driver=driver, op=op, workers=workers)
                results.append(r)
                print(json.dumps(r), file=sys.stderr)
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'workers':>7} {'op':<10} {'driver':<17} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'cpu us/op':>9} {'asyncpg/psycopg':>15}"
    ]
    by = {(r["workers"], r["op"], r["driver"]): r for r in results}
    for r in results:
        ratio = ""
        if r["driver"] == "asyncpg":
            base = by.get((r["workers"], r["op"], "psycopg"), {})
            if base.get("ops_per_s"):
                ratio = f"{r['ops_per_s'] / base['ops_per_s']:.2f}"
        lines.append(
            f"{r['workers']:>7} {r['op']:<10} {r['driver']:<17} {r.get('ops_per_s', 0):>9}"
            f" {r.get('p50_ms', 0):>8} {r.get('p99_ms', 0):>8}"
            f" {r.get('client_cpu_us_per_op', 0):>9} {ratio:>15}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--url", help="an existing empty database (default: a throwaway server)")
    ap.add_argument("--workers", default="1,16", help="comma-separated concurrency levels")
    ap.add_argument("--ops", type=int, default=300, help="operations per worker per phase")
    ap.add_argument("--seconds", type=float, default=20.0, help="time bound per phase")
    ap.add_argument("--pool", type=int, default=16, help="connections per driver pool")
    ap.add_argument("--no-fsync", action="store_true", help="throwaway server with fsync off")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    meta = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "psycopg": psycopg.__version__,
        "asyncpg": asyncpg.__version__,
        "pool": args.pool,
        "fsync": not args.no_fsync if not args.url else "server's own",
    }
    if args.url:
        results = bench(args.url, workers, args.ops, args.seconds, args.pool)
    else:
        if not available():
            print("PostgreSQL server binaries not found", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="sg-bench-pg-") as tmp:
            server = PostgresServer(tmp, fsync=not args.no_fsync)
            with server:
                os.environ.update(server.env())
                url = server.create_database("bench")
                with psycopg.connect(url) as c:
                    meta["server"] = c.info.parameter_status("server_version")
                results = bench(url, workers, args.ops, args.seconds, args.pool)
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(json.dumps(meta))
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

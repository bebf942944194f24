"""PostgreSQL storage: the same ``Storage`` contract as SQLite, shared by any number of replicas.

Driver: psycopg 3 with ``psycopg_pool.ConnectionPool`` (sync). ``scripts/bench_pg_driver.py``
measures it against asyncpg on the hot-path transaction mix.

Threads and the event loop: every method blocks its caller for one or more round trips.
Called from a thread (admin calls, enrollment, the HTTP side port, cold verifications: the
service's thread pool; the CLI), it blocks that thread. Called under
``sealgate.storage.bridge.run`` — the service's attestation hot path (Challenge, warm Attest,
ReleaseKey) on the event loop's own thread — every wait goes to the loop instead: psycopg's
waits through ``_Connection.wait`` (``waiting.wait_async``), a wait for a pool connection to
a worker thread, a wait for the group committer to a future. The loop serves other calls
meanwhile, and no call pays a thread hand-off. The two round trips every flow makes — the
Attest read (``attest_inputs``) and the group commit's — go through ``pgwire`` (libpq
directly, prepared statements, no cursor); everything else through psycopg's cursors.

Semantics, matching ``SqliteStorage``:

* Single use (``consume_challenge``, ``consume_enrollment``, ``complete_attestation``): one
  conditional ``UPDATE … WHERE used = 0 AND expires_at > now``. Under READ COMMITTED a
  concurrent updater waits for the row lock, then re-evaluates the WHERE clause on the newest
  row version (https://www.postgresql.org/docs/15/transaction-iso.html#XACT-READ-COMMITTED),
  so across replicas exactly one UPDATE matches.
* The audit log is one linear chain: each append takes ``pg_advisory_xact_lock(AUDIT_LOCK)``
  in its own statement and only then reads the head in the next one (READ COMMITTED takes a
  fresh snapshot per statement, and a transaction's locks are released only after its commit
  is visible, so the head read is the last committed one). The primary key on ``seq`` is the
  backstop: a fork could never commit.
* ``atomic()`` holds one connection and transaction on the calling thread; every call inside
  joins it, each as a savepoint (psycopg ``Connection.transaction()`` nests as SAVEPOINT).
* ``config_generation`` moves by trigger in the changing transaction (``schema`` step 2).
* Round trips: one statement wherever SQLite has one (``UPDATE … RETURNING``, upserts,
  ``= ANY(array)``), repeated statements server-side prepared (psycopg ``prepare_threshold``),
  and the audit lock taken as late as possible in a transaction. ``pipeline=True`` sends a
  write transaction in two round trips instead (psycopg pipeline mode,
  https://www.psycopg.org/psycopg3/docs/advanced/pipeline.html: BEGIN, the challenge
  UPDATE, the lock and the head read together, then the inserts and COMMIT); measured on
  loopback (2-core Xeon, PostgreSQL on the same host) it cost 25-60% more client CPU per
  flow and was no faster with 16 threads (slower with one), so it is off by default; it
  pays when the database is a network hop away.

Group commit: ``create_challenge(…, audit)`` and ``complete_attestation`` outside
``atomic()`` go to the committer, which commits every queued call in one transaction of two
round trips with the audit lock held for one of them (``_Committer``: a thread for thread
callers, a drain on the loop for loop callers, which waits up to ``GATHER_DELAY`` for calls
still running on its loop to join a batch); the callers wait for its outcome. Inside
``atomic()``, and as the fallback for a batch that failed for a reason of one job's own,
they run one by one as above.

Failures: a lost connection, a server shutting down (57P01/57P03), a pool timeout, a
cancelled statement → ``StorageUnavailable`` (nothing was committed by the failing call when
it fails before COMMIT; a failure *at* COMMIT is reported the same way: the caller must treat
the outcome as unknown and never release a key for it). Messages carry the redacted URL and
the SQLSTATE, never libpq's text (it can quote the conninfo). Connections are checked on
checkout without a round trip (an idle connection whose socket is readable was closed or told
to shut down by the server) and the pool replaces them, so calls work again as soon as the
server is back, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import queue
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
import psycopg.errors
import psycopg_pool
from psycopg import sql as pgsql
from psycopg import waiting
from psycopg.abc import RV, PQGen
from psycopg.connection import _WAIT_INTERVAL

from sealgate.storage import (
    AUDIT_PAGE_BYTES,
    AttestationRecord,
    AttestInputs,
    AuditAppend,
    AuditRow,
    Challenge,
    Enrollment,
    KeyVersionRecord,
    ModelKeyRecord,
    ModelRegistration,
    Node,
    PolicyRecord,
    ReferenceValue,
    Revocation,
    SecretRecord,
    SigningKeyRecord,
    Storage,
    StorageError,
    StorageUnavailable,
    WrappedItem,
    bridge,
    pgwire,
    schema,
)
from sealgate.storage import rows as rows_
from sealgate.storage.url import redact

log = logging.getLogger("sealgate.storage.postgres")

SCHEMA_VERSION = schema.SCHEMA_VERSION
MIGRATIONS: list[tuple[int, list[str]]] = schema.render("postgresql")

#: The shared model-registration statements (``sealgate.storage.rows``) in psycopg's form.
_MODEL_REGISTRATION_BY_VERSION = rows_.postgres_params(rows_.MODEL_REGISTRATION_BY_VERSION)
_MODEL_REGISTRATIONS_ALL = rows_.postgres_params(rows_.MODEL_REGISTRATIONS_ALL)
_MODEL_REGISTRATIONS_OF_KEY = rows_.postgres_params(rows_.MODEL_REGISTRATIONS_OF_KEY)
_MODEL_REGISTRATION_INSERT = rows_.postgres_params(rows_.MODEL_REGISTRATION_INSERT)
_ATTEST_INPUTS = rows_.postgres_params(rows_.ATTEST_INPUTS)
#: The same read as a prepared statement for ``pgwire`` (its ``?`` are, in order, the
#: challenge id, now and the node id).
_ATTEST_INPUTS_NUMBERED: LiteralString = (
    rows_.ATTEST_INPUTS.replace("?", "$1", 1).replace("?", "$2", 1).replace("?", "$3", 1)
)

_GENESIS = bytes(32)

#: Advisory lock keys (per database, https://www.postgresql.org/docs/15/explicit-locking.html
#: #ADVISORY-LOCKS): appends to the audit chain, and schema migration by starting replicas.
AUDIT_LOCK = 0x5EA1_6A7E_0A0D_0001
MIGRATE_LOCK = 0x5EA1_6A7E_0A0D_0002

_CHALLENGE_COLS = "id, nonce, platform, node_id, created_at, expires_at"
_ENROLLMENT_COLS = (
    "id, node_id, ek_fingerprint, ek_ca_fingerprint, ak_public, ak_name, secret_hash,"
    " created_at, expires_at"
)
_NODE_COLS = (
    "node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public, enrolled_at,"
    " revoked, revoked_at"
)
_REV_COLS = "seq, platform, identity, node_id, reason, revoked_at, revoked_by, lifted_at, lifted_by"
_ATT_COLS = (
    "jti, node_id, platform, challenge_id, claims, runtime_key_jkt, issued_at, expires_at,"
    " granted_keys, revocation_mark"
)

_SQL_LOCK_AUDIT: LiteralString = "SELECT pg_advisory_xact_lock(%s)"
_SQL_AUDIT_HEAD: LiteralString = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
_SQL_AUDIT_INSERT: LiteralString = "INSERT INTO audit (seq, entry, hash) VALUES (%s, %s, %s)"
_SQL_CHALLENGE_INSERT: LiteralString = (
    "INSERT INTO challenges (id, nonce, platform, node_id, created_at, expires_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
_SQL_CHALLENGE_USE: LiteralString = (
    "UPDATE challenges SET used = 1 WHERE id = %s AND used = 0 AND expires_at > %s RETURNING id"
)
#: Group commit (see ``_Committer``): one statement per kind of work whatever the batch's
#: size, each with ONE json parameter that the server unpacks (json_to_recordset,
#: https://www.postgresql.org/docs/15/functions-json.html): json.dumps and bytes.hex run in
#: C, where psycopg's array dumpers run per element in Python (measured: a quarter of the
#: committer's CPU). Byte strings travel as hex (decode(…, 'hex')).
_SQL_CHALLENGE_INSERT_MANY: LiteralString = (
    "INSERT INTO challenges (id, nonce, platform, node_id, created_at, expires_at)"
    " SELECT id, decode(nonce, 'hex'), platform, node_id, created_at, expires_at"
    " FROM json_to_recordset($1::json) AS x(id text, nonce text, platform text,"
    " node_id text, created_at bigint, expires_at bigint)"
)
#: The batch's challenge rows locked in id order (LockRows runs above the Sort,
#: https://www.postgresql.org/docs/15/sql-select.html#SQL-FOR-UPDATE-SHARE), before the
#: UPDATE whose join order the planner picks: replicas' batches never deadlock.
_SQL_CHALLENGE_LOCK_MANY: LiteralString = (
    "SELECT id FROM challenges WHERE id = ANY(ARRAY(SELECT json_array_elements_text($1::json)))"
    " ORDER BY id FOR UPDATE"
)
#: The single-use UPDATE of every complete job at once. Jobs naming the same challenge
#: update its row once: one join row is used (sql-update.html, "FROM": only one of the
#: joined rows updates a target row) and RETURNING names that job, the only winner. The
#: attestation rows come from the winners alone (the INSERT reads the UPDATE's RETURNING;
#: a data-modifying WITH runs to completion whether or not it is read, queries-with.html).
#: The ``id = ANY(ARRAY(…))`` condition repeats the join's for the planner: a function scan
#: is estimated at 100 rows, so without it the prepared statement's plan hash-joins a
#: sequential scan of the whole challenges table (EXPLAIN showed it; its cost grew with the
#: live challenges, and was most of PostgreSQL's CPU per flow); with it, the primary key.
_SQL_COMPLETE_MANY: LiteralString = (
    "WITH u AS (UPDATE challenges c SET used = 1"
    " FROM json_to_recordset($1::json) AS j(i int, cid text, now bigint)"
    " WHERE c.id = ANY(ARRAY(SELECT json_array_elements($1::json)->>'cid'))"
    " AND c.id = j.cid AND c.used = 0 AND c.expires_at > j.now RETURNING j.i),"
    " r AS (INSERT INTO attestations (jti, node_id, platform, challenge_id, claims,"
    " runtime_key_jkt, issued_at, expires_at, granted_keys, revocation_mark)"
    " SELECT a.jti, a.node_id, a.platform, a.challenge_id, a.claims, a.jkt, a.issued_at,"
    " a.expires_at, a.granted, a.mark FROM json_to_recordset($2::json) AS a(i int, jti text,"
    " node_id text, platform text, challenge_id text, claims text, jkt text, issued_at bigint,"
    " expires_at bigint, granted text, mark bigint) JOIN u ON u.i = a.i RETURNING 1)"
    " SELECT i FROM u"
)
_SQL_AUDIT_INSERT_MANY: LiteralString = (
    "INSERT INTO audit (seq, entry, hash)"
    " SELECT seq, decode(entry, 'hex'), decode(hash, 'hex')"
    " FROM json_to_recordset($1::json) AS x(seq bigint, entry text, hash text)"
)
#: The batch statements, prepared once per connection (SQL PREPARE,
#: https://www.postgresql.org/docs/15/sql-prepare.html) and run by EXECUTE inside the
#: multi-statement messages: planned once, not per batch.
_PREPARE: LiteralString = (
    "PREPARE sealgate_challenge_insert (json) AS " + _SQL_CHALLENGE_INSERT_MANY + ";"
    " PREPARE sealgate_challenge_lock (json) AS " + _SQL_CHALLENGE_LOCK_MANY + ";"
    " PREPARE sealgate_complete (json, json) AS " + _SQL_COMPLETE_MANY + ";"
    " PREPARE sealgate_audit_insert (json) AS " + _SQL_AUDIT_INSERT_MANY + ";"
    " PREPARE sealgate_audit_lock (bigint) AS SELECT pg_advisory_xact_lock($1);"
    " PREPARE sealgate_audit_head AS " + _SQL_AUDIT_HEAD + ";"
    " PREPARE sealgate_attest_inputs (text, bigint, text) AS " + _ATTEST_INPUTS_NUMBERED
)
_ATT_KEYS = (
    "i", "jti", "node_id", "platform", "challenge_id", "claims", "jkt", "issued_at",
    "expires_at", "granted", "mark",
)  # fmt: skip
_SQL_ATT_INSERT: LiteralString = (
    "INSERT INTO attestations (jti, node_id, platform, challenge_id, claims,"
    " runtime_key_jkt, issued_at, expires_at, granted_keys, revocation_mark)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

#: SQLSTATE classes that mean "the server cannot serve now" (Appendix A,
#: https://www.postgresql.org/docs/15/errcodes-appendix.html): 08 connection exception,
#: 53 insufficient resources, 57 operator intervention (admin shutdown, cannot connect now,
#: query canceled), 40 transaction rollback (serialization failure, deadlock).
_UNAVAILABLE_CLASSES = ("08", "53", "57", "40")


def _idle_ok(conn: psycopg.Connection[Any]) -> bool:
    """Checkout check without a round trip: a connection idle in the pool has nothing to
    read, so a readable socket means the server closed it or sent it a FATAL (shutdown,
    pg_terminate_backend, a restart since it was last used)."""
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


class _Connection(psycopg.Connection[Any]):
    """A psycopg connection whose waits for the server go through the event loop when the
    call runs under ``bridge.run`` (the service's hot path on the loop's thread), and block
    the calling thread otherwise. Every sync wait of psycopg goes through ``wait`` (its
    commands, COMMIT/ROLLBACK, COPY, pipelines); ``waiting.wait_async`` is the same
    generator-driving loop the async connection uses."""

    def wait(
        self,
        gen: PQGen[RV],
        interval: float = _WAIT_INTERVAL,
        timeout: float | None = None,
    ) -> RV:
        if bridge.active():
            return bridge.wait(
                waiting.wait_async(gen, self.pgconn.socket, interval=interval, timeout=timeout)
            )
        return super().wait(gen, interval, timeout)


class PostgresStorage(Storage):
    """``Storage`` on PostgreSQL through a psycopg connection pool.

    ``url`` is a libpq URI or conninfo; its password (if any) is only ever passed to libpq.
    ``pool_timeout`` bounds how long a call waits for a connection (then
    ``storage.unavailable``), ``connect_timeout`` a connection attempt (libpq's minimum is 2 s),
    ``statement_timeout_ms`` any statement, and ``idle_in_transaction_ms`` how long a
    transaction may sit idle (a frozen replica holding the audit lock is cut off after it);
    ``pipeline`` sends each write transaction in two round trips (see the module notes)."""

    remote = True

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 2,
        pool_max: int = 16,
        pool_timeout: float = 2.0,
        connect_timeout: int = 2,
        statement_timeout_ms: int = 10_000,
        idle_in_transaction_ms: int = 10_000,
        application_name: str = "sealgate",
        pipeline: bool = False,
        group_commit: bool = True,
        migrate: bool = True,
    ) -> None:
        self._redacted = redact(url)
        self._pipeline = pipeline
        self._pool_timeout = pool_timeout
        #: The connection of the caller's ``atomic()``: per thread, and per call on the
        #: event loop (each ``bridge.run`` call has its own context).
        self._held: contextvars.ContextVar[psycopg.Connection[Any] | None] = contextvars.ContextVar(
            "sealgate_pg_atomic", default=None
        )
        #: Connections on which the group-commit statements are prepared.
        self._prepared: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._closed = False
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, int(connect_timeout)),
            "application_name": application_name,
            # Server-side bounds for every session (libpq "options",
            # https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNECT-OPTIONS).
            "options": f"-c statement_timeout={int(statement_timeout_ms)}"
            f" -c idle_in_transaction_session_timeout={int(idle_in_transaction_ms)}",
            # Prepare a statement server-side from its second use on a connection.
            "prepare_threshold": 1,
        }
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                url,
                kwargs=kwargs,
                min_size=max(0, pool_min),
                max_size=max(1, pool_max, pool_min),
                timeout=pool_timeout,
                # The pool retries a lost connection with exponential backoff for this long,
                # then gives up on that attempt; the next call that finds no connection
                # starts a fresh one at once. Short, so after a long outage the backoff
                # never grows past a few seconds and a replica recovers by itself soon
                # after the server is back.
                reconnect_timeout=4.0,
                name="sealgate",
                connection_class=_Connection,
                open=False,
            )
        )
        self._pool.open(wait=False)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self._pool.close(timeout=1)
                raise
        # A caller waits for a connection, the batch's two round trips (their statements
        # each bounded by statement_timeout) and a batch ahead of it; past this bound it
        # gets storage.unavailable (the outcome unknown: fail closed).
        self._committer: _Committer | None = (
            _Committer(self, pool_timeout + 2 * 2 * statement_timeout_ms / 1000 + 1.0)
            if group_commit
            else None
        )

    # -- errors and connections -------------------------------------------------------
    def _unavailable_msg(self, why: str) -> StorageUnavailable:
        return StorageUnavailable(f"database {self._redacted}: {why}")

    def _unavailable(self, e: BaseException) -> StorageUnavailable:
        if isinstance(e, psycopg_pool.PoolTimeout):
            why = "no database connection within the pool timeout"
        elif isinstance(e, psycopg.errors.AdminShutdown):
            why = "the server is shutting down"
        elif isinstance(e, psycopg.errors.CannotConnectNow):
            why = "the server is starting up or shutting down"
        elif isinstance(e, psycopg.errors.QueryCanceled):
            why = "statement timed out"
        else:
            why = "connection lost or refused"
        state = getattr(e, "sqlstate", None)
        suffix = f" (SQLSTATE {state})" if state else ""
        return StorageUnavailable(f"database {self._redacted}: {why}{suffix}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except psycopg_pool.PoolClosed:
            raise StorageError("storage.closed", "storage is closed") from None
        except psycopg.IntegrityError as e:
            # Constraint errors not mapped to a specific code at the call site.
            raise StorageError(
                "storage.constraint",
                f"constraint violated: {e.diag.constraint_name or e.sqlstate}",
            ) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            raise self._unavailable(e) from None
        except psycopg.DataError as e:
            # A value PostgreSQL cannot hold where SQLite could (a NUL character in text,
            # https://www.postgresql.org/docs/15/datatype-character.html): the caller's input.
            raise StorageError(
                "storage.value.invalid", f"a value cannot be stored (SQLSTATE {e.sqlstate})"
            ) from None
        except psycopg.Error as e:
            state = e.sqlstate or ""
            if state[:2] in _UNAVAILABLE_CLASSES:
                raise self._unavailable(e) from None
            raise

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's ``atomic()`` connection, or one from the pool for this call."""
        held = self._held.get()
        if held is not None:
            yield held
            return
        if self._closed:
            raise StorageError("storage.closed", "storage is closed")
        with self._errors():
            conn = self._checkout()
            try:
                yield conn
            finally:
                # A connection left in a transaction is rolled back by the pool, a broken
                # or closed one discarded and replaced.
                self._pool.putconn(conn)

    def _checkout(self) -> psycopg.Connection[Any]:
        # Stale connections are dropped here and the next one taken at once. (The pool's own
        # ``check`` hook backs off a second or more after each failed check, so a restart
        # that killed every idle connection would cost a whole pool timeout.)
        deadline = time.monotonic() + self._pool_timeout
        while True:
            conn = self._getconn(deadline)
            if _idle_ok(conn):
                return conn
            conn.close()
            self._pool.putconn(conn)

    def _getconn(self, deadline: float) -> psycopg.Connection[Any]:
        if not bridge.active():
            return self._pool.getconn(timeout=max(0.01, deadline - time.monotonic()))
        # On the event loop: an idle connection is taken at once; waiting for one (all
        # busy, or being re-established after an outage) happens in a worker thread, so
        # the loop keeps serving, health checks included.
        try:
            # psycopg_pool refuses a timeout that has run out by the time it looks, even
            # with a connection ready; 1 ms is the most the loop waits here (the pool is
            # sized so that loop calls find one idle: bridge.MAX_CALLS).
            return self._pool.getconn(timeout=0.001)
        except psycopg_pool.PoolTimeout:
            pass
        return bridge.wait(
            asyncio.to_thread(self._pool.getconn, timeout=max(0.01, deadline - time.monotonic()))
        )

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction, or a savepoint inside this thread's ``atomic()``."""
        with self._connection() as conn, self._errors(), conn.transaction():
            yield conn

    @contextmanager
    def atomic(self) -> Iterator[None]:
        if self._held.get() is not None:
            with self._tx():
                yield
            return
        if self._closed:
            raise StorageError("storage.closed", "storage is closed")
        with self._connection() as conn:
            token = self._held.set(conn)
            try:
                with self._errors(), conn.transaction():
                    yield
            finally:
                self._held.reset(token)

    @contextmanager
    def _statement(self) -> Iterator[psycopg.Connection[Any]]:
        """One statement: its own transaction (autocommit), or inside ``atomic()`` a savepoint,
        so a failing statement undoes only itself (PostgreSQL aborts the whole transaction on
        an error otherwise, where SQLite keeps it usable)."""
        with self._connection() as conn, self._errors():
            if self._held.get() is None:
                yield conn
            else:
                with conn.transaction():
                    yield conn

    def _q(self, query: LiteralString, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._held.get() is not None or self._closed:
            with self._statement() as conn:
                return conn.execute(query, args).fetchall()
        # The hot path's reads (several per attestation): the same checkout, statement and
        # error mapping as ``_statement`` without its three generator context managers.
        try:
            conn = self._checkout()
            try:
                return conn.execute(query, args).fetchall()
            finally:
                self._pool.putconn(conn)
        except Exception as e:
            with self._errors():
                raise e from None
            raise  # _errors() always raises

    def _x(self, query: LiteralString, args: tuple[Any, ...] = ()) -> int:
        """Execute a write in autocommit (its own transaction) or in ``atomic()``; rowcount."""
        with self._statement() as conn:
            return conn.execute(query, args).rowcount

    def _pipelined(self) -> bool:
        # Pipeline mode only when asked, and only for a transaction of our own: inside
        # atomic() the enclosing transaction's statements run one by one.
        return self._pipeline and self._held.get() is None

    # -- schema -----------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to ``SCHEMA_VERSION`` (one replica at a time, all DDL in one
        transaction: PostgreSQL DDL is transactional); return the version found before."""
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            c.execute(schema.SCHEMA_VERSION_TABLE["postgresql"])
            row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
            found = int(row[0]) if row and row[0] is not None else 0
            if found > SCHEMA_VERSION:
                raise StorageError(
                    "storage.schema.too_new",
                    f"database schema {found} is newer than this sealgate ({SCHEMA_VERSION})",
                )
            for version, statements in MIGRATIONS:
                if version <= found:
                    continue
                for statement in statements:
                    c.execute(statement)
                c.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        return found

    def schema_version(self) -> int:
        return int(self._q("SELECT MAX(version) FROM schema_version")[0][0])

    def close(self) -> None:
        # Queued group-commit jobs were accepted: commit them (bounded) before the pool goes.
        if self._committer is not None:
            self._committer.stop(timeout=5)
        self._closed = True
        self._pool.close(timeout=5)

    # -- audit append (inside a transaction) ------------------------------------------
    def _head_after_lock(self, c: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
        c.execute(_SQL_LOCK_AUDIT, (AUDIT_LOCK,))
        return c.execute(_SQL_AUDIT_HEAD)

    @staticmethod
    def _append_with_head(
        c: psycopg.Connection[Any],
        head: tuple[Any, ...] | None,
        make_entry: Callable[[int], bytes],
        link: Callable[[bytes, bytes], bytes],
    ) -> AuditRow:
        seq = int(head[0]) + 1 if head else 1
        prev = bytes(head[1]) if head else _GENESIS
        entry = make_entry(seq)
        h = link(prev, entry)
        c.execute(_SQL_AUDIT_INSERT, (seq, entry, h))
        return AuditRow(seq, entry, h)

    def _append_audit_in_tx(
        self,
        c: psycopg.Connection[Any],
        make_entry: Callable[[int], bytes],
        link: Callable[[bytes, bytes], bytes],
    ) -> AuditRow:
        return self._append_with_head(c, self._head_after_lock(c).fetchone(), make_entry, link)

    # -- challenges -------------------------------------------------------------------
    def create_challenge(self, ch: Challenge, audit: AuditAppend | None = None) -> None:
        args = (ch.id, ch.nonce, ch.platform, ch.node_id, ch.created_at, ch.expires_at)
        if audit is None:
            self._x(_SQL_CHALLENGE_INSERT, args)
            return
        if self._committer is not None and self._held.get() is None:
            self._committer.submit(_Job(_CREATE, ch.id, args, audit))
            return
        self._create_challenge_direct(args, audit)

    def _create_challenge_direct(self, args: tuple[Any, ...], audit: AuditAppend) -> None:
        with self._connection() as c, self._errors():
            pipe = c.pipeline() if self._pipelined() else contextlib.nullcontext()
            with pipe, c.transaction():
                c.execute(_SQL_CHALLENGE_INSERT, args)
                # Pipelined: one round trip up to here, one for the audit INSERT and COMMIT.
                head = self._head_after_lock(c).fetchone()
                self._append_with_head(c, head, *audit)

    def consume_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        rows = self._q(
            "UPDATE challenges SET used = 1 WHERE id = %s AND used = 0 AND expires_at > %s"
            " RETURNING id, nonce, platform, node_id, created_at, expires_at",
            (challenge_id, now),
        )
        return rows_.challenge(rows)

    def get_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        rows = self._q(
            "SELECT id, nonce, platform, node_id, created_at, expires_at FROM challenges"
            " WHERE id = %s AND used = 0 AND expires_at > %s",
            (challenge_id, now),
        )
        return rows_.challenge(rows)

    def attest_inputs(self, challenge_id: str, node_id: str, now: int) -> AttestInputs:
        if self._held.get() is not None or self._closed:
            return rows_.attest_inputs(self._q(_ATTEST_INPUTS, (challenge_id, now, node_id)))
        # Once per Attest: the prepared statement on libpq directly (``pgwire``).
        params: list[str | int] = [challenge_id, int(now), node_id]
        with self._errors():
            conn = self._checkout()
            try:
                self._ensure_prepared(conn)
                res = pgwire.prepared(conn, b"sealgate_attest_inputs", params)
            finally:
                self._pool.putconn(conn)
        return rows_.attest_inputs(pgwire.rows(res))

    def config_generation(self) -> int:
        return int(self._q("SELECT generation FROM config_generation")[0][0])

    def purge_expired(self, now: int, batch: int = 200) -> int:
        total = 0
        for table, key in (("challenges", "id"), ("enrollments", "id"), ("attestations", "jti")):
            # Bounded batches by primary key, each its own short transaction; SKIP LOCKED so
            # replicas purging at once split the rows instead of queueing on each other.
            query = pgsql.SQL(
                "DELETE FROM {t} WHERE {k} IN (SELECT {k} FROM {t} WHERE expires_at < %s"
                " LIMIT %s FOR UPDATE SKIP LOCKED)"
            ).format(t=pgsql.Identifier(table), k=pgsql.Identifier(key))
            while True:
                with self._statement() as c:
                    n = c.execute(query, (now, batch)).rowcount
                total += n
                if n < batch:
                    break
        return total

    # -- reference values -------------------------------------------------------------
    def add_reference_values(self, values: list[ReferenceValue]) -> None:
        with self._tx() as c:
            for v in values:
                try:
                    with c.transaction():
                        c.execute(
                            "INSERT INTO reference_values (id, platform, set_name, name, value,"
                            " description, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (
                                v.id,
                                v.platform,
                                v.set_name,
                                v.name,
                                v.value,
                                v.description,
                                v.created_at,
                            ),
                        )
                except psycopg.errors.UniqueViolation:
                    raise StorageError(
                        "storage.reference_value.exists", f"reference value {v.id} exists"
                    ) from None

    def list_reference_values(
        self, platform: str | None = None, set_name: str | None = None
    ) -> list[ReferenceValue]:
        rows = self._q(
            "SELECT id, platform, set_name, name, value, description, created_at"
            " FROM reference_values WHERE (%s::text IS NULL OR platform = %s)"
            " AND (%s::text IS NULL OR set_name = %s)"
            " ORDER BY platform, set_name, name, id",
            (platform or None, platform or None, set_name or None, set_name or None),
        )
        return [ReferenceValue(*r) for r in rows]

    def remove_reference_value(self, rv_id: str) -> bool:
        return self._x("DELETE FROM reference_values WHERE id = %s", (rv_id,)) == 1

    # -- policies ---------------------------------------------------------------------
    def put_policy(self, key_id: str, document: str, now: int) -> PolicyRecord:
        rows = self._q(
            "INSERT INTO policies (key_id, document, revision, updated_at)"
            " VALUES (%s, %s, 1, %s) ON CONFLICT (key_id) DO UPDATE"
            " SET document = EXCLUDED.document, revision = policies.revision + 1,"
            " updated_at = EXCLUDED.updated_at RETURNING revision",
            (key_id, document, now),
        )
        return PolicyRecord(key_id, document, int(rows[0][0]), now)

    def get_policy(self, key_id: str) -> PolicyRecord | None:
        rows = self._q(
            "SELECT key_id, document, revision, updated_at FROM policies WHERE key_id = %s",
            (key_id,),
        )
        return (
            PolicyRecord(rows[0][0], rows[0][1], int(rows[0][2]), int(rows[0][3])) if rows else None
        )

    def list_policies(self) -> list[PolicyRecord]:
        rows = self._q(
            "SELECT key_id, document, revision, updated_at FROM policies ORDER BY key_id"
        )
        return [PolicyRecord(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def delete_policy(self, key_id: str) -> bool:
        return self._x("DELETE FROM policies WHERE key_id = %s", (key_id,)) == 1

    # -- model keys -------------------------------------------------------------------
    def add_key_version(
        self, key_id: str, version: KeyVersionRecord, description: str, create: bool
    ) -> ModelKeyRecord:
        with self._tx() as c:
            # FOR UPDATE: concurrent rotations of one key queue here and the second sees the
            # first one's version.
            row = c.execute(
                "SELECT current_version FROM model_keys WHERE key_id = %s FOR UPDATE", (key_id,)
            ).fetchone()
            if create:
                if row is not None:
                    raise StorageError("storage.model_key.exists", f"model key {key_id} exists")
                if version.version != 1:
                    raise StorageError("storage.model_key.bad_version", "new keys start at 1")
                try:
                    with c.transaction():
                        c.execute(
                            "INSERT INTO model_keys (key_id, current_version, description,"
                            " created_at, rotated_at) VALUES (%s, 1, %s, %s, %s)",
                            (key_id, description, version.created_at, version.created_at),
                        )
                except psycopg.errors.UniqueViolation:
                    # Created by another replica since the SELECT.
                    raise StorageError(
                        "storage.model_key.exists", f"model key {key_id} exists"
                    ) from None
            else:
                if row is None:
                    raise StorageError("storage.model_key.not_found", f"no model key {key_id}")
                if version.version != int(row[0]) + 1:
                    raise StorageError(
                        "storage.model_key.bad_version",
                        f"version {version.version} does not follow {row[0]}",
                    )
                c.execute(
                    "UPDATE model_keys SET current_version = %s, rotated_at = %s WHERE key_id = %s",
                    (version.version, version.created_at, key_id),
                )
            c.execute(
                "INSERT INTO key_versions (key_id, version, wrapped, kek_id, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (key_id, version.version, version.wrapped, version.kek_id, version.created_at),
            )
            rec = self._get_model_key(c, key_id)
        assert rec is not None
        return rec

    _MK_SELECT: LiteralString = (
        "SELECT k.key_id, k.current_version, k.description, k.created_at, k.rotated_at,"
        " ARRAY(SELECT v.version FROM key_versions v WHERE v.key_id = k.key_id"
        " ORDER BY v.version) FROM model_keys k"
    )

    @staticmethod
    def _model_key(r: tuple[Any, ...]) -> ModelKeyRecord:
        versions = tuple(int(x) for x in r[5])
        return ModelKeyRecord(r[0], int(r[1]), versions, r[2], int(r[3]), int(r[4]))

    def _get_model_key(self, c: psycopg.Connection[Any], key_id: str) -> ModelKeyRecord | None:
        row = c.execute(self._MK_SELECT + " WHERE k.key_id = %s", (key_id,)).fetchone()
        return self._model_key(row) if row else None

    def get_model_key(self, key_id: str) -> ModelKeyRecord | None:
        rows = self._q(self._MK_SELECT + " WHERE k.key_id = %s", (key_id,))
        return self._model_key(rows[0]) if rows else None

    def list_model_keys(self) -> list[ModelKeyRecord]:
        return [self._model_key(r) for r in self._q(self._MK_SELECT + " ORDER BY k.key_id")]

    def get_key_version(self, key_id: str, version: int) -> KeyVersionRecord | None:
        rows = self._q(
            "SELECT key_id, version, wrapped, kek_id, created_at FROM key_versions"
            " WHERE key_id = %s AND version = %s",
            (key_id, version),
        )
        if not rows:
            return None
        r = rows[0]
        return rows_.key_version(r)

    def get_current_key_version(self, key_id: str) -> KeyVersionRecord | None:
        rows = self._q(
            "SELECT v.key_id, v.version, v.wrapped, v.kek_id, v.created_at FROM model_keys k"
            " JOIN key_versions v ON v.key_id = k.key_id AND v.version = k.current_version"
            " WHERE k.key_id = %s",
            (key_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return rows_.key_version(r)

    # -- registered models ------------------------------------------------------------
    def add_model_registration(self, reg: ModelRegistration) -> tuple[ModelRegistration, bool]:
        with self._tx() as c:
            # The key version row is locked (FOR UPDATE), so two
            # registrations of one version queue and the second sees the first.
            if (
                c.execute(
                    "SELECT 1 FROM key_versions WHERE key_id = %s AND version = %s FOR UPDATE",
                    (reg.key_id, reg.version),
                ).fetchone()
                is None
            ):
                raise StorageError(
                    "storage.model_key.not_found",
                    f"no version {reg.version} of model key {reg.key_id}",
                )
            row = c.execute(_MODEL_REGISTRATION_BY_VERSION, (reg.key_id, reg.version)).fetchone()
            if row is not None:
                return rows_.model_registration(row), False
            c.execute(_MODEL_REGISTRATION_INSERT, rows_.model_registration_params(reg))
        return reg, True

    def get_model_registration(self, key_id: str, version: int) -> ModelRegistration | None:
        rows = self._q(_MODEL_REGISTRATION_BY_VERSION, (key_id, version))
        return rows_.model_registration(rows[0]) if rows else None

    def list_model_registrations(self, key_id: str | None = None) -> list[ModelRegistration]:
        if key_id is None:
            rows = self._q(_MODEL_REGISTRATIONS_ALL)
        else:
            rows = self._q(_MODEL_REGISTRATIONS_OF_KEY, (key_id,))
        return [rows_.model_registration(r) for r in rows]

    # -- enrollment and nodes ---------------------------------------------------------
    def create_enrollment(self, e: Enrollment) -> None:
        self._x(
            "INSERT INTO enrollments (id, node_id, ek_fingerprint, ek_ca_fingerprint, ak_public,"
            " ak_name, secret_hash, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                e.id,
                e.node_id,
                e.ek_fingerprint,
                e.ek_ca_fingerprint,
                e.ak_public,
                e.ak_name,
                e.secret_hash,
                e.created_at,
                e.expires_at,
            ),
        )

    def consume_enrollment(self, enrollment_id: str, now: int) -> Enrollment | None:
        rows = self._q(
            "UPDATE enrollments SET used = 1 WHERE id = %s AND used = 0 AND expires_at > %s"
            " RETURNING id, node_id, ek_fingerprint, ek_ca_fingerprint, ak_public, ak_name,"
            " secret_hash, created_at, expires_at",
            (enrollment_id, now),
        )
        if len(rows) != 1:
            return None
        r = rows[0]
        return rows_.enrollment(r)

    def upsert_node(self, node: Node) -> None:
        with self._tx() as c:
            # An AK belongs to one node: re-enrolling the same AK under another id moves it.
            c.execute(
                "DELETE FROM nodes WHERE ak_name = %s AND node_id <> %s",
                (node.ak_name, node.node_id),
            )
            c.execute("DELETE FROM nodes WHERE node_id = %s", (node.node_id,))
            c.execute(
                "INSERT INTO nodes (node_id, platform, ek_fingerprint, ek_ca_fingerprint,"
                " ak_name, ak_public, enrolled_at, revoked, revoked_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    node.node_id,
                    node.platform,
                    node.ek_fingerprint,
                    node.ek_ca_fingerprint,
                    node.ak_name,
                    node.ak_public,
                    node.enrolled_at,
                    int(node.revoked),
                    node.revoked_at,
                ),
            )

    _node = staticmethod(rows_.node)

    def get_node(self, node_id: str) -> Node | None:
        rows = self._q(
            "SELECT node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public,"
            " enrolled_at, revoked, revoked_at FROM nodes WHERE node_id = %s",
            (node_id,),
        )
        return self._node(rows[0]) if rows else None

    def get_node_by_ak(self, ak_name: bytes) -> Node | None:
        rows = self._q(
            "SELECT node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public,"
            " enrolled_at, revoked, revoked_at FROM nodes WHERE ak_name = %s",
            (ak_name,),
        )
        return self._node(rows[0]) if rows else None

    def list_nodes(self) -> list[Node]:
        rows = self._q(
            "SELECT node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public,"
            " enrolled_at, revoked, revoked_at FROM nodes ORDER BY node_id"
        )
        return [self._node(r) for r in rows]

    def revoke_node(self, node_id: str, now: int) -> Node | None:
        with self._tx() as c:
            c.execute(
                "UPDATE nodes SET revoked = 1, revoked_at = %s WHERE node_id = %s AND revoked = 0",
                (now, node_id),
            )
            row = c.execute(
                "SELECT node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public,"
                " enrolled_at, revoked, revoked_at FROM nodes WHERE node_id = %s",
                (node_id,),
            ).fetchone()
        return self._node(row) if row else None

    def delete_node(self, node_id: str) -> Node | None:
        rows = self._q(
            "DELETE FROM nodes WHERE node_id = %s RETURNING node_id, platform, ek_fingerprint,"
            " ek_ca_fingerprint, ak_name, ak_public, enrolled_at, revoked, revoked_at",
            (node_id,),
        )
        return self._node(rows[0]) if rows else None

    # -- identity revocations ---------------------------------------------------------
    _revocation = staticmethod(rows_.revocation)

    _REV_SELECT: LiteralString = (
        "SELECT seq, platform, identity, node_id, reason, revoked_at, revoked_by, lifted_at,"
        " lifted_by FROM revocations"
    )

    def add_revocation(self, r: Revocation) -> tuple[Revocation, bool]:
        active = self._REV_SELECT + " WHERE platform = %s AND identity = %s AND lifted_at = 0"
        with self._tx() as c:
            row = c.execute(active, (r.platform, r.identity)).fetchone()
            if row is not None:
                return self._revocation(row), False
            # A concurrent revocation of the same identity (another replica) conflicts on the
            # partial unique index: then the one in force is the first, as with SQLite.
            row = c.execute(
                "INSERT INTO revocations (platform, identity, node_id, reason, revoked_at,"
                " revoked_by) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (platform, identity) WHERE lifted_at = 0 DO NOTHING"
                " RETURNING seq, platform, identity, node_id, reason, revoked_at, revoked_by,"
                " lifted_at, lifted_by",
                (r.platform, r.identity, r.node_id, r.reason, r.revoked_at, r.revoked_by),
            ).fetchone()
            if row is not None:
                return self._revocation(row), True
            row = c.execute(active, (r.platform, r.identity)).fetchone()
        if row is None:  # lifted again in between: nothing in force to report
            raise StorageError("storage.constraint", "revocation changed concurrently; retry")
        return self._revocation(row), False

    def lift_revocation(
        self, platform: str, identity: str, now: int, actor: str
    ) -> Revocation | None:
        rows = self._q(
            "UPDATE revocations SET lifted_at = %s, lifted_by = %s"
            " WHERE platform = %s AND identity = %s AND lifted_at = 0"
            " RETURNING seq, platform, identity, node_id, reason, revoked_at, revoked_by,"
            " lifted_at, lifted_by",
            (max(now, 1), actor, platform, identity),
        )
        return self._revocation(rows[0]) if rows else None

    def list_revocations(self, include_lifted: bool = False) -> list[Revocation]:
        rows = self._q(
            self._REV_SELECT + " WHERE %s OR lifted_at = 0 ORDER BY seq", (include_lifted,)
        )
        return [self._revocation(r) for r in rows]

    def revocation_state(
        self, platform: str, identities: list[str]
    ) -> tuple[int, list[Revocation]]:
        ids = list(dict.fromkeys(identities))
        # One statement, as on SQLite: the mark and the matching rows (a row per match, or one
        # row of NULLs); ``= ANY(array)`` keeps it one prepared statement for any list length.
        rows = self._q(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM revocations), r.seq, r.platform,"
            " r.identity, r.node_id, r.reason, r.revoked_at, r.revoked_by, r.lifted_at,"
            " r.lifted_by FROM (SELECT 1) AS one LEFT JOIN revocations r"
            " ON r.platform = %s AND r.identity = ANY(%s::text[]) ORDER BY r.seq",
            (platform, ids),
        )
        mark = int(rows[0][0]) if rows else 0
        return mark, [self._revocation(r[1:]) for r in rows if r[1] is not None]

    # -- attestations -----------------------------------------------------------------
    def complete_attestation(
        self,
        challenge_id: str,
        now: int,
        audit: AuditAppend,
        record: AttestationRecord | None = None,
    ) -> bool:
        if self._committer is not None and self._held.get() is None:
            return self._committer.submit(
                _Job(_COMPLETE, challenge_id, (challenge_id, now), audit, record)
            )
        return self._complete_direct(challenge_id, now, audit, record)

    def _complete_direct(
        self,
        challenge_id: str,
        now: int,
        audit: AuditAppend,
        record: AttestationRecord | None,
    ) -> bool:
        # The same conditional UPDATE as consume_challenge, in the transaction that writes
        # the outcome: the decision and the single use commit together.
        with self._connection() as c, self._errors():
            try:
                if self._pipelined():
                    # Sent with the audit lock and head read (one round trip), then the
                    # inserts and COMMIT (another).
                    with c.pipeline(), c.transaction():
                        won = c.execute(_SQL_CHALLENGE_USE, (challenge_id, now))
                        head_cur = self._head_after_lock(c)
                        if won.fetchone() is None:
                            raise _Lost()
                        head = head_cur.fetchone()
                        if record is not None:
                            c.execute(_SQL_ATT_INSERT, _attestation_args(record))
                        self._append_with_head(c, head, *audit)
                else:
                    # One statement at a time, the audit lock taken last so it is held for
                    # the fewest round trips, and never by a caller that lost the challenge.
                    with c.transaction():
                        if c.execute(_SQL_CHALLENGE_USE, (challenge_id, now)).fetchone() is None:
                            raise _Lost()
                        if record is not None:
                            c.execute(_SQL_ATT_INSERT, _attestation_args(record))
                        self._append_audit_in_tx(c, *audit)
            except _Lost:
                return False
        return True

    def _ensure_prepared(self, conn: psycopg.Connection[Any]) -> None:
        """The hot statements (``_PREPARE``) prepared on ``conn``, once per session."""
        if conn in self._prepared:
            return
        # Its own message, in autocommit: no batch's rollback undoes them, and they last as
        # long as the session (a new connection is a new object).
        try:
            pgwire.simple(conn, _PREPARE.encode())
        except BaseException:
            # Some may exist now and a second PREPARE of a name fails: this session is not
            # used again (the pool discards a closed connection).
            conn.close()
            raise
        self._prepared.add(conn)

    # -- group commit (see _Committer) --------------------------------------------------
    def _direct(self, job: _Job) -> bool:
        """One job on the unbatched path (a batch that failed for a reason of its own)."""
        if job.kind == _CREATE:
            self._create_challenge_direct(job.args, job.audit)
            return True
        return self._complete_direct(job.args[0], job.args[1], job.audit, job.record)

    def _commit_batch(self, jobs: list[_Job]) -> list[bool]:
        """Commit ``jobs`` in one transaction (two round trips); whether each one won.
        Raises (nothing committed, or at COMMIT: unknown) as the unbatched calls do.

        Each round trip is ONE simple-protocol Query message holding several statements
        (https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT),
        sent on libpq directly (``pgwire``). That protocol has no bind parameters, so each
        value (one JSON document per statement) is a literal escaped by libpq
        (PQescapeLiteral); each statement still gets its own snapshot under READ COMMITTED,
        so the head read after the lock sees the last commit. Measured against psycopg's
        pipeline mode for the same statements (loopback, 2-core Xeon): about half the client
        CPU per batch and a shorter round trip. The statements are PREPAREd once per
        connection, so the server plans them once, not per batch."""
        if self._closed:
            raise StorageError("storage.closed", "storage is closed")
        creates = [
            {
                "id": a[0],
                "nonce": a[1].hex(),
                "platform": a[2],
                "node_id": a[3],
                "created_at": a[4],
                "expires_at": a[5],
            }
            for a in (j.args for j in jobs if j.kind == _CREATE)
        ]
        completes = [(i, j) for i, j in enumerate(jobs) if j.kind == _COMPLETE]
        with self._errors():
            conn = self._checkout()
            try:
                self._ensure_prepared(conn)

                def lit(doc: Any) -> bytes:
                    return pgwire.literal(conn, json.dumps(doc))

                # The batch statements touch a handful of rows by primary key, whatever the
                # tables' size: planned once per session (a generic plan), and with
                # sequential scans off while planning (runtime-config-query.html). Otherwise
                # a plan made while the challenges table was small seq-scans it for the rest
                # of the session (auto_explain showed it on a fresh deployment: the scans
                # grew with the live challenges until the next autoanalyze), and planning per
                # batch instead cost a sixth of PostgreSQL's CPU.
                parts = [
                    b"BEGIN; SET LOCAL plan_cache_mode = force_generic_plan;"
                    b" SET LOCAL enable_seqscan = off"
                ]
                if creates:
                    parts.append(b"EXECUTE sealgate_challenge_insert(" + lit(creates) + b")")
                if completes:
                    recs = [
                        dict(zip(_ATT_KEYS, (i, *_attestation_args(j.record)), strict=True))
                        for i, j in completes
                        if j.record is not None
                    ]
                    ids = lit([j.key for _, j in completes])
                    uses = lit([{"i": i, "cid": j.args[0], "now": j.args[1]} for i, j in completes])
                    parts.append(b"EXECUTE sealgate_challenge_lock(" + ids + b")")
                    parts.append(b"EXECUTE sealgate_complete(" + uses + b", " + lit(recs) + b")")
                parts.append(
                    b"EXECUTE sealgate_audit_lock(%d); EXECUTE sealgate_audit_head" % AUDIT_LOCK
                )
                try:
                    results = pgwire.simple(conn, b"; ".join(parts))  # first round trip
                    won = [j.kind == _CREATE for j in jobs]
                    if completes:
                        for i in pgwire.text_ints(results[-3]):  # RETURNING: the winners
                            won[i] = True
                    head = results[-1]
                    if head.ntuples:
                        seq, prev = pgwire.text_int(head, 0, 0), pgwire.text_bytea(head, 0, 1)
                    else:
                        seq, prev = 0, _GENESIS
                    rows: list[dict[str, Any]] = []
                    for j, w in zip(jobs, won, strict=True):
                        if not w:
                            continue
                        make_entry, link = j.audit
                        seq += 1
                        entry = make_entry(seq)
                        prev = link(prev, entry)
                        rows.append({"seq": seq, "entry": entry.hex(), "hash": prev.hex()})
                    # Second round trip: the audit rows and COMMIT.
                    if rows:
                        query = b"EXECUTE sealgate_audit_insert(" + lit(rows) + b"); COMMIT"
                    else:
                        query = b"COMMIT"
                    status = pgwire.simple(conn, query)[-1].command_status
                    # COMMIT of a transaction the server had already aborted answers
                    # ROLLBACK, not an error (sql-commit.html): nothing was committed.
                    if status != b"COMMIT":
                        raise self._unavailable_msg("the batch's transaction was rolled back")
                except BaseException:
                    # Nothing of the batch may stay (a failure in make_entry, a statement):
                    # roll back here, not only when the pool takes the connection back.
                    if not conn.closed:
                        with contextlib.suppress(psycopg.Error):
                            pgwire.simple(conn, b"ROLLBACK")
                    raise
            finally:
                self._pool.putconn(conn)
        return won

    def get_attestation(self, jti: str) -> AttestationRecord | None:
        rows = self._q(
            "SELECT jti, node_id, platform, challenge_id, claims, runtime_key_jkt, issued_at,"
            " expires_at, granted_keys, revocation_mark FROM attestations WHERE jti = %s",
            (jti,),
        )
        if not rows:
            return None
        r = rows[0]
        return rows_.attestation(r)

    # -- audit ------------------------------------------------------------------------
    def append_audit(
        self, make_entry: Callable[[int], bytes], link: Callable[[bytes, bytes], bytes]
    ) -> AuditRow:
        with self._connection() as c, self._errors():
            pipe = c.pipeline() if self._pipelined() else contextlib.nullcontext()
            with pipe, c.transaction():
                head = self._head_after_lock(c).fetchone()
                row = self._append_with_head(c, head, make_entry, link)
        return row

    def list_audit(
        self, after_seq: int = 0, limit: int = 1000, max_bytes: int = AUDIT_PAGE_BYTES
    ) -> list[AuditRow]:
        # The byte budget is applied by the server (running total of entry sizes, taken from
        # the TOAST header without reading the value), so a page of huge entries is never
        # sent whole: rows are kept while the bytes before them are under the budget, which
        # is SQLite's "stop once the page reaches max_bytes" (at least one row).
        rows = self._q(
            "SELECT seq, entry, hash FROM (SELECT seq, entry, hash,"
            " SUM(octet_length(entry)) OVER (ORDER BY seq) - octet_length(entry) AS before"
            " FROM audit WHERE seq > %s ORDER BY seq LIMIT %s) AS page"
            " WHERE before < %s ORDER BY seq",
            (after_seq, limit, max(1, max_bytes)),
        )
        return [rows_.audit_row(r) for r in rows]

    def iter_audit(
        self, batch: int = 1000, max_bytes: int = AUDIT_PAGE_BYTES
    ) -> Iterator[list[AuditRow]]:
        after = 0
        while True:
            rows = self.list_audit(after, batch, max_bytes)
            if not rows:
                return
            yield rows
            after = rows[-1].seq

    def audit_head(self) -> tuple[int, bytes]:
        rows = self._q(_SQL_AUDIT_HEAD)
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, _GENESIS)

    def audit_hash_at(self, seq: int) -> bytes | None:
        rows = self._q("SELECT hash FROM audit WHERE seq = %s", (seq,))
        return bytes(rows[0][0]) if rows else None

    # -- signing keys -----------------------------------------------------------------
    def add_signing_key(self, rec: SigningKeyRecord, retire_others_at: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE signing_keys SET retired_at = %s WHERE retired_at = 0", (retire_others_at,)
            )
            c.execute(
                "INSERT INTO signing_keys (kid, wrapped_private, public_jwk, created_at,"
                " retired_at, kek_id) VALUES (%s, %s, %s, %s, 0, %s)",
                (rec.kid, rec.wrapped_private, rec.public_jwk, rec.created_at, rec.kek_id),
            )

    def list_signing_keys(self) -> list[SigningKeyRecord]:
        rows = self._q(
            "SELECT kid, wrapped_private, public_jwk, created_at, retired_at, kek_id"
            " FROM signing_keys ORDER BY created_at, kid"
        )
        return [rows_.signing_key(r) for r in rows]

    # -- service secrets and re-wrapping ----------------------------------------------
    def get_secret(self, name: str) -> SecretRecord | None:
        rows = self._q(
            "SELECT name, wrapped, kek_id, created_at FROM secrets WHERE name = %s", (name,)
        )
        return rows_.secret(rows[0]) if rows else None

    def put_secret(self, rec: SecretRecord) -> SecretRecord:
        # ON CONFLICT DO NOTHING waits for a concurrent inserter and then skips; the SELECT
        # that follows (a new statement, a new snapshot) sees whichever row won.
        self._x(
            "INSERT INTO secrets (name, wrapped, kek_id, created_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO NOTHING",
            (rec.name, rec.wrapped, rec.kek_id, rec.created_at),
        )
        stored = self.get_secret(rec.name)
        assert stored is not None
        return stored

    _WRAPPED: tuple[tuple[str, LiteralString], ...] = (
        (
            "key_version",
            "SELECT key_id, version, wrapped, kek_id FROM key_versions"
            " WHERE kek_id <> %s ORDER BY key_id, version LIMIT %s",
        ),
        (
            "signing_key",
            "SELECT kid, wrapped_private, kek_id FROM signing_keys"
            " WHERE kek_id <> %s ORDER BY kid LIMIT %s",
        ),
        (
            "secret",
            "SELECT name, wrapped, kek_id FROM secrets WHERE kek_id <> %s ORDER BY name LIMIT %s",
        ),
    )

    def list_wrapped(self, exclude_kek_id: str, limit: int = 100) -> list[WrappedItem]:
        out: list[WrappedItem] = []
        for kind, query in self._WRAPPED:
            if len(out) >= limit:
                break
            for r in self._q(query, (exclude_kek_id, limit - len(out))):
                ref = tuple(str(x) for x in r[:-2])
                out.append(WrappedItem(kind, ref, bytes(r[-2]), r[-1]))  # type: ignore[arg-type]
        return out

    def rewrap(self, item: WrappedItem, wrapped: bytes, kek_id: str) -> bool:
        query: LiteralString
        if item.kind == "key_version":
            query = (
                "UPDATE key_versions SET wrapped = %s, kek_id = %s"
                " WHERE key_id = %s AND version = %s AND wrapped = %s"
            )
            ref: tuple[Any, ...] = (item.ref[0], int(item.ref[1]))
        elif item.kind == "signing_key":
            query = (
                "UPDATE signing_keys SET wrapped_private = %s, kek_id = %s"
                " WHERE kid = %s AND wrapped_private = %s"
            )
            ref = (item.ref[0],)
        else:
            query = "UPDATE secrets SET wrapped = %s, kek_id = %s WHERE name = %s AND wrapped = %s"
            ref = (item.ref[0],)
        return self._x(query, (wrapped, kek_id, *ref, item.wrapped)) == 1


#: The most jobs one group commit takes (one transaction, two round trips): enough that 32
#: or more concurrent flows per replica share a commit, small enough that one batch's
#: statements stay well inside one pipeline's buffers and its lock hold stays short.
MAX_BATCH = 64

#: How long a loop's drain waits for calls still running on its loop to queue their jobs
#: before it commits a batch without them (only while there are such calls; it stops
#: waiting as soon as every one has queued). Measured with ``scripts/bench_service.py``
#: (2-core Xeon, one replica of two processes, 32 clients, alternating runs): against no
#: wait, 2 ms took a batch from about 3 jobs to about 4 and lowered the CPU per flow by
#: 0.3 ms in the replica and 0.1-0.15 ms in PostgreSQL; 5 ms with the early end did better
#: again at 300 flows/s (p99 41-65 ms against 51-128 ms), at most 5 ms more per write.
GATHER_DELAY = 0.005

_CREATE = 0
_COMPLETE = 1


@dataclass(eq=False)
class _Job:
    """One audited hot-path write waiting for the committer. ``key`` is the challenge id:
    a batch takes its row locks in ``key`` order (see ``_Committer``)."""

    kind: int
    key: str
    args: tuple[Any, ...]
    audit: AuditAppend
    record: AttestationRecord | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: Called (from the committer's thread) once ``done`` is set: wakes a caller waiting on
    #: the event loop.
    wake: Callable[[], None] | None = None
    won: bool = False
    #: Set instead of ``won``: ``("unavailable", message)``, or the exception to raise.
    error: BaseException | tuple[str, str] | None = None
    #: The caller stopped waiting (bounded wait): not started, it is dropped.
    abandoned: bool = False

    def finish(self) -> None:
        self.done.set()
        if self.wake is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                self.wake()


class _Committer:
    """Group commit for ``create_challenge(…, audit)`` and ``complete_attestation`` outside
    ``atomic()``: one thread takes every queued job (at most ``MAX_BATCH``) and commits them
    in ONE transaction of two round trips (each one multi-statement message, see
    ``PostgresStorage._commit_batch``):

    1. BEGIN, one statement per kind of work for the whole batch (the challenge INSERT; the
       challenge rows locked in id order; the conditional single-use UPDATE with the
       attestation INSERT fed by its RETURNING), ``pg_advisory_xact_lock`` and the audit
       head read;
    2. Python links each winner's entry onto the head in order, then one multi-row audit
       INSERT and COMMIT.

    The audit lock is thus held for one round trip and one Python step per *batch* instead
    of several round trips per call, each of which (with many threads) also waits for the
    GIL: that convoy was the bottleneck. Semantics are the unbatched path's: the single-use
    UPDATE is the same statement (READ COMMITTED re-checks its WHERE on the newest row
    version, so across replicas one caller wins, and within a batch a second job for the
    same challenge sees the first one's update and loses); the chain is appended under the
    same lock after a head read in a later statement; a caller learns it won only after
    COMMIT returned.

    Row locks are taken in challenge-id order and all before the advisory lock, so batches
    of several replicas cannot deadlock on each other (each holds only locks earlier in one
    global order while it waits) nor with the unbatched path (one row lock, then the
    advisory lock, never a row lock after it).

    Failures: ``StorageUnavailable`` (connection lost, pool or statement timeout, a failure
    at COMMIT) goes to every job of the batch: its outcome is unknown, so no caller may
    release a key for it (fail closed). Any other failure (a constraint, a value PostgreSQL
    cannot hold, an exception in a ``make_entry``) rolls the batch back and runs its jobs
    one by one on the unbatched path, so one bad job never decides the others' fate.

    Callers on an event loop (``bridge``) are batched on that loop instead: the first job
    starts a drain there (an unbounded ``bridge.run``), which commits what has queued by
    then, batch after batch, while the callers wait for futures it settles on the same
    thread. No thread hand-off, GIL hand-off or self-pipe wake-up per job; batches of the
    thread and of the loop are two committers like two replicas' (same lock order)."""

    def __init__(self, st: PostgresStorage, wait_bound: float) -> None:
        self._st = st
        self._wait_bound = wait_bound
        self._q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        #: Batches and jobs committed so far (tests, measurements).
        self.batches = 0
        self.jobs = 0
        #: Per event loop: the jobs of its callers waiting for the next batch, and whether
        #: a drain is running there (only touched on that loop's thread).
        self._drains: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Drain] = (
            weakref.WeakKeyDictionary()
        )
        self._thread = threading.Thread(
            target=self._loop, name="sealgate-pg-committer", daemon=True
        )
        self._thread.start()

    def submit(self, job: _Job) -> bool:
        with self._lock:
            if self._stopping:
                raise StorageError("storage.closed", "storage is closed")
            if not bridge.active():
                self._q.put(job)
        if bridge.active():
            finished = bridge.wait(self._queue_on_loop(job))
        else:
            finished = job.done.wait(self._wait_bound)
        if not finished:
            job.abandoned = True
            if not job.done.is_set():
                # The committer is stuck past every timeout it applies (pool, statement):
                # the outcome is unknown, so this is a failure, never a success.
                raise self._st._unavailable_msg("no commit outcome within the wait bound")
        err = job.error
        if err is None:
            return job.won
        if isinstance(err, tuple):
            raise StorageUnavailable(err[1])
        raise err

    def _queue_on_loop(self, job: _Job) -> asyncio.Future[bool]:
        """Queue ``job`` for this loop's drain (starting one if none runs); a future that
        turns True when it is done, False past the wait bound."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def settle(value: bool) -> None:
            timer.cancel()
            if not fut.done():
                fut.set_result(value)

        timer = loop.call_later(self._wait_bound, settle, False)
        job.wake = lambda: settle(True)  # by the drain, on this loop's thread
        drain = self._drains.get(loop)
        if drain is None:
            drain = self._drains[loop] = _Drain()
        drain.jobs.append(job)
        if drain.gathering is not None and len(drain.jobs) >= min(bridge.running(), MAX_BATCH):
            bridge.settle(drain.gathering)
        if drain.task is None:
            drain.task = loop.create_task(bridge.run(lambda: self._drain(drain), bounded=False))
        return fut

    def _drain(self, drain: _Drain) -> None:
        """Commit a loop's queued jobs, batch after batch, until none is left (on the loop's
        thread, under ``bridge.run``)."""
        try:
            while drain.jobs:
                if len(drain.jobs) < min(bridge.running(), MAX_BATCH):
                    # Calls running on this loop that have not queued their job yet will
                    # within about one verification's time: wait for them (at most
                    # GATHER_DELAY; _queue_on_loop ends the wait once all have queued), so
                    # they share this batch's commit instead of paying for one of their own
                    # (group commit's delay, as PostgreSQL's commit_delay).
                    loop = asyncio.get_running_loop()
                    drain.gathering = loop.create_future()
                    timer = loop.call_later(GATHER_DELAY, bridge.settle, drain.gathering)
                    try:
                        bridge.wait(drain.gathering)
                    finally:
                        timer.cancel()
                        drain.gathering = None
                jobs = drain.jobs[:MAX_BATCH]
                del drain.jobs[:MAX_BATCH]
                self._run_guarded(jobs)
        except BaseException:
            # Cancelled (the loop is closing): the jobs not taken yet fail too, no caller is
            # left waiting for a drain that is gone.
            for j in drain.jobs:
                j.error = ("unavailable", f"database {self._st._redacted}: commit failed")
                j.finish()
            drain.jobs.clear()
            raise
        finally:
            # Nothing can queue between the last check and this: one thread, no wait.
            drain.task = None

    def stop(self, timeout: float) -> None:
        """Refuse new jobs, commit the queued ones, then end the thread; jobs still queued
        after ``timeout`` fail with ``storage.closed``."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._q.put(None)
        self._thread.join(timeout)
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.error = StorageError("storage.closed", "storage is closed")
                job.finish()

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < MAX_BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            self._run_guarded(jobs)
            if stop:
                # Jobs queued before the stop marker were all taken above; any left were
                # refused in submit().
                return

    def _run_guarded(self, jobs: list[_Job]) -> None:
        try:
            self._run([j for j in jobs if not j.abandoned])
        except BaseException as e:  # never leave a caller waiting, never die silently
            log.error("group commit failed (%s)", type(e).__name__)
            for j in jobs:
                if not j.done.is_set():
                    j.error = ("unavailable", f"database {self._st._redacted}: commit failed")
                    j.finish()
            if isinstance(e, asyncio.CancelledError):
                raise  # a loop's drain being cancelled (its loop is closing): stop there

    def _run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        st = self._st
        order = sorted(jobs, key=lambda j: j.key)
        try:
            won = st._commit_batch(order)
        except StorageUnavailable as e:
            for j in order:
                j.error = ("unavailable", e.message)
                j.finish()
            return
        except StorageError as e:
            if e.code == "storage.closed":
                for j in order:
                    j.error = StorageError("storage.closed", "storage is closed")
                    j.finish()
                return
            won = None
        except Exception:
            won = None
        if won is not None:
            self.batches += 1
            self.jobs += len(order)
            for j, w in zip(order, won, strict=True):
                j.won = w
                j.finish()
            return
        # Rolled back for a reason that may be one job's own: each alone, on the
        # unbatched path, so each gets its own outcome.
        for j in order:
            try:
                j.won = st._direct(j)
            except BaseException as e:
                if isinstance(e, StorageUnavailable):
                    j.error = ("unavailable", e.message)
                else:
                    j.error = e
            j.finish()


@dataclass(eq=False)
class _Drain:
    """One event loop's queue of group-commit jobs (see ``_Committer``)."""

    jobs: list[_Job] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    #: While the drain gathers a batch: settled once every running call has queued.
    gathering: asyncio.Future[None] | None = None


class _Lost(Exception):
    """The challenge was not live and unused: roll back, write nothing."""


def _attestation_args(rec: AttestationRecord) -> tuple[Any, ...]:
    return (
        rec.jti,
        rec.node_id,
        rec.platform,
        rec.challenge_id,
        rec.claims_json,
        rec.runtime_key_jkt,
        rec.issued_at,
        rec.expires_at,
        json.dumps(list(rec.granted_key_ids)),
        rec.revocation_mark,
    )


__all__ = ["AUDIT_LOCK", "MIGRATIONS", "SCHEMA_VERSION", "PostgresStorage"]

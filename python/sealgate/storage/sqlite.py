"""SQLite (WAL) storage, the embedded default.

The schema comes from the migrations history both backends share (``storage.schema``:
INTEGER, TEXT, BLOB here; BIGINT, TEXT, BYTEA on PostgreSQL). Every thread gets its own
connection; multi-statement writes run inside ``BEGIN IMMEDIATE`` so concurrent writers
(threads or processes) serialize.

WAL with ``synchronous=NORMAL``: a crash never corrupts the file, and a committed
challenge consumption is visible to every other connection at once; only the last
transactions before a power loss may be lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    WrappedItem,
    schema,
)
from sealgate.storage import rows as rows_

#: The shared migrations history (``sealgate.storage.schema``) as SQLite runs it: the same
#: statement text released versions ran, so existing databases' schemas never differ.
MIGRATIONS: list[tuple[int, list[str]]] = schema.render("sqlite")

SCHEMA_VERSION = schema.SCHEMA_VERSION
_GENESIS = bytes(32)


class _WriteLock:
    """Serializes writers: a thread lock, plus an flock(2) on a side file for other processes.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between retries, which wrecks tail
    latency when several worker processes write; a blocking flock wakes the next writer as
    soon as the lock is free. BEGIN IMMEDIATE + busy_timeout stay as the safety net.
    """

    def __init__(self, path: str | None) -> None:
        self._thread = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._thread.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread.release()
                raise

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _make_private(path: str) -> None:
    """The database holds wrapped keys, tokens' records and the audit log: 0600.

    SQLite would create it with 0644 under the usual umask; the unix VFS creates the -wal
    and -shm files with the database file's own mode (sqlite.org/src os_unix.c
    ``findCreateFileMode``), so creating the database 0600 first covers them too, whenever
    they appear. Files left wider by an older version are narrowed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


class SqliteStorage(Storage):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            _make_private(self._path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers in this process queue here instead of in SQLite's busy handler, which
        # sleeps in steps of milliseconds and wrecks tail latency under load; other
        # processes still serialize through BEGIN IMMEDIATE + busy_timeout.
        self._write = _WriteLock(None if self._path == ":memory:" else self._path + ".write-lock")
        self._closed = False
        self.migrate()

    # -- connections ------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StorageError("storage.closed", "storage is closed")
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            # Switching a new file to WAL reads the header under a shared lock and then needs
            # an exclusive one; a connection holding a shared lock that waits for another's
            # write would deadlock, so SQLite answers "database is locked" at once instead of
            # calling the busy handler (sqlite.org/c3ref/busy_handler.html). Processes opening
            # one new file together (replicas, workers) therefore switch it under the writers'
            # lock. WAL mode is persistent: a file already in it (always, once the constructor
            # has migrated it) needs no switch, so readers never wait for a writer here.
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                with self._write:
                    conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (no lock upgrade deadlocks).

        Inside an open transaction on this thread's connection (``atomic``), it is a
        SAVEPOINT instead: the enclosing transaction holds the write lock and commits, and a
        failure here undoes only this call's writes (SQLite "SAVEPOINT", lang_savepoint).
        """
        conn = self._conn()
        nested = conn.in_transaction
        begin, undo, end = (
            ("SAVEPOINT nested", ("ROLLBACK TO nested", "RELEASE nested"), "RELEASE nested")
            if nested
            else ("BEGIN IMMEDIATE", ("ROLLBACK",), "COMMIT")
        )
        with contextlib.nullcontext() if nested else self._write:
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                for sql in undo:
                    conn.execute(sql)
                raise
            conn.execute(end)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self._tx():
            yield

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, args).fetchall()

    def migrate(self) -> int:
        """Bring the schema to ``SCHEMA_VERSION``; return the version found before."""
        with self._tx() as c:
            c.execute(schema.SCHEMA_VERSION_TABLE["sqlite"])
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
                for sql in statements:
                    c.execute(sql)
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return found

    def schema_version(self) -> int:
        row = self._q("SELECT MAX(version) FROM schema_version")
        return int(row[0][0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
        self._write.close()

    # -- challenges -------------------------------------------------------------------
    def create_challenge(self, ch: Challenge, audit: AuditAppend | None = None) -> None:
        with self._tx():
            self._insert_challenge(ch)
            if audit is not None:
                self._append_audit_in_tx(*audit)

    def _insert_challenge(self, ch: Challenge) -> None:
        self._conn().execute(
            "INSERT INTO challenges (id, nonce, platform, node_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ch.id, ch.nonce, ch.platform, ch.node_id, ch.created_at, ch.expires_at),
        )

    def consume_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        # One conditional UPDATE ... RETURNING: atomic in SQLite and PostgreSQL alike, so at
        # most one caller (thread, process or replica) ever sees the row.
        with self._tx():
            rows = (
                self._conn()
                .execute(
                    "UPDATE challenges SET used = 1 WHERE id = ? AND used = 0 AND expires_at > ?"
                    " RETURNING id, nonce, platform, node_id, created_at, expires_at",
                    (challenge_id, now),
                )
                .fetchall()
            )
        return rows_.challenge(rows)

    def get_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        rows = self._q(
            "SELECT id, nonce, platform, node_id, created_at, expires_at FROM challenges"
            " WHERE id = ? AND used = 0 AND expires_at > ?",
            (challenge_id, now),
        )
        return rows_.challenge(rows)

    def attest_inputs(self, challenge_id: str, node_id: str, now: int) -> AttestInputs:
        return rows_.attest_inputs(self._q(rows_.ATTEST_INPUTS, (challenge_id, now, node_id)))

    def config_generation(self) -> int:
        return int(self._q("SELECT generation FROM config_generation")[0][0])

    def purge_expired(self, now: int, batch: int = 200) -> int:
        total = 0
        for table in ("challenges", "enrollments", "attestations"):
            while True:
                with self._tx() as c:
                    n = c.execute(
                        f"DELETE FROM {table} WHERE rowid IN"  # noqa: S608 (fixed names)
                        f" (SELECT rowid FROM {table} WHERE expires_at < ? LIMIT ?)",
                        (now, batch),
                    ).rowcount
                total += n
                if n < batch:
                    break
        return total

    # -- reference values -------------------------------------------------------------
    def add_reference_values(self, values: list[ReferenceValue]) -> None:
        with self._tx() as c:
            for v in values:
                try:
                    c.execute(
                        "INSERT INTO reference_values (id, platform, set_name, name, value,"
                        " description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
                except sqlite3.IntegrityError:
                    raise StorageError(
                        "storage.reference_value.exists", f"reference value {v.id} exists"
                    ) from None

    def list_reference_values(
        self, platform: str | None = None, set_name: str | None = None
    ) -> list[ReferenceValue]:
        sql = (
            "SELECT id, platform, set_name, name, value, description, created_at"
            " FROM reference_values WHERE 1 = 1"
        )
        args: list[Any] = []
        if platform:
            sql += " AND platform = ?"
            args.append(platform)
        if set_name:
            sql += " AND set_name = ?"
            args.append(set_name)
        sql += " ORDER BY platform, set_name, name, id"
        return [ReferenceValue(*r) for r in self._q(sql, tuple(args))]

    def remove_reference_value(self, rv_id: str) -> bool:
        cur = self._conn().execute("DELETE FROM reference_values WHERE id = ?", (rv_id,))
        return cur.rowcount == 1

    # -- policies ---------------------------------------------------------------------
    def put_policy(self, key_id: str, document: str, now: int) -> PolicyRecord:
        with self._tx() as c:
            row = c.execute("SELECT revision FROM policies WHERE key_id = ?", (key_id,)).fetchone()
            revision = (int(row[0]) if row else 0) + 1
            if row:
                c.execute(
                    "UPDATE policies SET document = ?, revision = ?, updated_at = ?"
                    " WHERE key_id = ?",
                    (document, revision, now, key_id),
                )
            else:
                c.execute(
                    "INSERT INTO policies (key_id, document, revision, updated_at)"
                    " VALUES (?, ?, ?, ?)",
                    (key_id, document, revision, now),
                )
        return PolicyRecord(key_id, document, revision, now)

    def get_policy(self, key_id: str) -> PolicyRecord | None:
        rows = self._q(
            "SELECT key_id, document, revision, updated_at FROM policies WHERE key_id = ?",
            (key_id,),
        )
        return PolicyRecord(*rows[0]) if rows else None

    def list_policies(self) -> list[PolicyRecord]:
        rows = self._q(
            "SELECT key_id, document, revision, updated_at FROM policies ORDER BY key_id"
        )
        return [PolicyRecord(*r) for r in rows]

    def delete_policy(self, key_id: str) -> bool:
        cur = self._conn().execute("DELETE FROM policies WHERE key_id = ?", (key_id,))
        return cur.rowcount == 1

    # -- model keys -------------------------------------------------------------------
    def add_key_version(
        self, key_id: str, version: KeyVersionRecord, description: str, create: bool
    ) -> ModelKeyRecord:
        with self._tx() as c:
            row = c.execute(
                "SELECT current_version FROM model_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if create:
                if row is not None:
                    raise StorageError("storage.model_key.exists", f"model key {key_id} exists")
                if version.version != 1:
                    raise StorageError("storage.model_key.bad_version", "new keys start at 1")
                c.execute(
                    "INSERT INTO model_keys (key_id, current_version, description, created_at,"
                    " rotated_at) VALUES (?, ?, ?, ?, ?)",
                    (key_id, 1, description, version.created_at, version.created_at),
                )
            else:
                if row is None:
                    raise StorageError("storage.model_key.not_found", f"no model key {key_id}")
                if version.version != int(row[0]) + 1:
                    raise StorageError(
                        "storage.model_key.bad_version",
                        f"version {version.version} does not follow {row[0]}",
                    )
                c.execute(
                    "UPDATE model_keys SET current_version = ?, rotated_at = ? WHERE key_id = ?",
                    (version.version, version.created_at, key_id),
                )
            c.execute(
                "INSERT INTO key_versions (key_id, version, wrapped, kek_id, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key_id, version.version, version.wrapped, version.kek_id, version.created_at),
            )
        rec = self.get_model_key(key_id)
        assert rec is not None
        return rec

    def _model_key(self, row: tuple[Any, ...]) -> ModelKeyRecord:
        versions = tuple(
            int(r[0])
            for r in self._q(
                "SELECT version FROM key_versions WHERE key_id = ? ORDER BY version", (row[0],)
            )
        )
        return ModelKeyRecord(row[0], int(row[1]), versions, row[2], row[3], row[4])

    def get_model_key(self, key_id: str) -> ModelKeyRecord | None:
        rows = self._q(
            "SELECT key_id, current_version, description, created_at, rotated_at"
            " FROM model_keys WHERE key_id = ?",
            (key_id,),
        )
        return self._model_key(rows[0]) if rows else None

    def list_model_keys(self) -> list[ModelKeyRecord]:
        rows = self._q(
            "SELECT key_id, current_version, description, created_at, rotated_at"
            " FROM model_keys ORDER BY key_id"
        )
        return [self._model_key(r) for r in rows]

    def get_key_version(self, key_id: str, version: int) -> KeyVersionRecord | None:
        rows = self._q(
            "SELECT key_id, version, wrapped, kek_id, created_at FROM key_versions"
            " WHERE key_id = ? AND version = ?",
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
            " WHERE k.key_id = ?",
            (key_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return rows_.key_version(r)

    # -- registered models ------------------------------------------------------------
    def add_model_registration(self, reg: ModelRegistration) -> tuple[ModelRegistration, bool]:
        with self._tx() as c:
            # The key version row is locked (the write lock is held), so two
            # registrations of one version queue and the second sees the first.
            if (
                c.execute(
                    "SELECT 1 FROM key_versions WHERE key_id = ? AND version = ?",
                    (reg.key_id, reg.version),
                ).fetchone()
                is None
            ):
                raise StorageError(
                    "storage.model_key.not_found",
                    f"no version {reg.version} of model key {reg.key_id}",
                )
            row = c.execute(
                rows_.MODEL_REGISTRATION_BY_VERSION, (reg.key_id, reg.version)
            ).fetchone()
            if row is not None:
                return rows_.model_registration(row), False
            c.execute(rows_.MODEL_REGISTRATION_INSERT, rows_.model_registration_params(reg))
        return reg, True

    def get_model_registration(self, key_id: str, version: int) -> ModelRegistration | None:
        rows = self._q(rows_.MODEL_REGISTRATION_BY_VERSION, (key_id, version))
        return rows_.model_registration(rows[0]) if rows else None

    def list_model_registrations(self, key_id: str | None = None) -> list[ModelRegistration]:
        if key_id is None:
            rows = self._q(rows_.MODEL_REGISTRATIONS_ALL)
        else:
            rows = self._q(rows_.MODEL_REGISTRATIONS_OF_KEY, (key_id,))
        return [rows_.model_registration(r) for r in rows]

    # -- enrollment and nodes ---------------------------------------------------------
    def create_enrollment(self, e: Enrollment) -> None:
        self._conn().execute(
            "INSERT INTO enrollments (id, node_id, ek_fingerprint, ek_ca_fingerprint, ak_public,"
            " ak_name, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        with self._tx():
            rows = (
                self._conn()
                .execute(
                    "UPDATE enrollments SET used = 1 WHERE id = ? AND used = 0 AND expires_at > ?"
                    " RETURNING id, node_id, ek_fingerprint, ek_ca_fingerprint, ak_public, ak_name,"
                    " secret_hash, created_at, expires_at",
                    (enrollment_id, now),
                )
                .fetchall()
            )
        if len(rows) != 1:
            return None
        r = rows[0]
        return rows_.enrollment(r)

    def upsert_node(self, node: Node) -> None:
        with self._tx() as c:
            # An AK belongs to one node: re-enrolling the same AK under another id moves it.
            c.execute(
                "DELETE FROM nodes WHERE ak_name = ? AND node_id <> ?",
                (node.ak_name, node.node_id),
            )
            c.execute("DELETE FROM nodes WHERE node_id = ?", (node.node_id,))
            c.execute(
                "INSERT INTO nodes (node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name,"
                " ak_public, enrolled_at, revoked, revoked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    _NODE_COLS = (
        "node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public, enrolled_at,"
        " revoked, revoked_at"
    )

    _node = staticmethod(rows_.node)

    def get_node(self, node_id: str) -> Node | None:
        rows = self._q(f"SELECT {self._NODE_COLS} FROM nodes WHERE node_id = ?", (node_id,))  # noqa: S608
        return self._node(rows[0]) if rows else None

    def get_node_by_ak(self, ak_name: bytes) -> Node | None:
        rows = self._q(f"SELECT {self._NODE_COLS} FROM nodes WHERE ak_name = ?", (ak_name,))  # noqa: S608
        return self._node(rows[0]) if rows else None

    def list_nodes(self) -> list[Node]:
        return [
            self._node(r)
            for r in self._q(f"SELECT {self._NODE_COLS} FROM nodes ORDER BY node_id")  # noqa: S608
        ]

    def revoke_node(self, node_id: str, now: int) -> Node | None:
        self._conn().execute(
            "UPDATE nodes SET revoked = 1, revoked_at = ? WHERE node_id = ? AND revoked = 0",
            (now, node_id),
        )
        return self.get_node(node_id)

    def delete_node(self, node_id: str) -> Node | None:
        with self._tx() as c:
            node = self.get_node(node_id)
            if node is not None:
                c.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
        return node

    # -- identity revocations ---------------------------------------------------------
    _REV_COLS = (
        "seq, platform, identity, node_id, reason, revoked_at, revoked_by, lifted_at, lifted_by"
    )

    _revocation = staticmethod(rows_.revocation)

    def _active_revocation(self, platform: str, identity: str) -> Revocation | None:
        rows = self._q(
            f"SELECT {self._REV_COLS} FROM revocations"  # noqa: S608 (fixed columns)
            " WHERE platform = ? AND identity = ? AND lifted_at = 0",
            (platform, identity),
        )
        return self._revocation(rows[0]) if rows else None

    def add_revocation(self, r: Revocation) -> tuple[Revocation, bool]:
        with self._tx() as c:
            current = self._active_revocation(r.platform, r.identity)
            if current is not None:
                return current, False
            row = c.execute(
                "INSERT INTO revocations (platform, identity, node_id, reason, revoked_at,"  # noqa: S608
                f" revoked_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING {self._REV_COLS}",
                (r.platform, r.identity, r.node_id, r.reason, r.revoked_at, r.revoked_by),
            ).fetchone()
        return self._revocation(row), True

    def lift_revocation(
        self, platform: str, identity: str, now: int, actor: str
    ) -> Revocation | None:
        with self._tx() as c:
            rows = c.execute(
                "UPDATE revocations SET lifted_at = ?, lifted_by = ?"  # noqa: S608
                " WHERE platform = ? AND identity = ? AND lifted_at = 0"
                f" RETURNING {self._REV_COLS}",
                (max(now, 1), actor, platform, identity),
            ).fetchall()
        return self._revocation(rows[0]) if rows else None

    def list_revocations(self, include_lifted: bool = False) -> list[Revocation]:
        where = "" if include_lifted else " WHERE lifted_at = 0"
        rows = self._q(f"SELECT {self._REV_COLS} FROM revocations{where} ORDER BY seq")  # noqa: S608
        return [self._revocation(r) for r in rows]

    def revocation_state(
        self, platform: str, identities: list[str]
    ) -> tuple[int, list[Revocation]]:
        ids = list(dict.fromkeys(identities))
        marks = ", ".join("?" for _ in ids) or "NULL"
        # One statement: the mark and the matching rows (a row per match, or one NULL row).
        rows = self._q(
            f"SELECT (SELECT COALESCE(MAX(seq), 0) FROM revocations), {self._REV_COLS}"  # noqa: S608
            " FROM (SELECT 1) LEFT JOIN revocations"
            f" ON platform = ? AND identity IN ({marks}) ORDER BY seq",
            (platform, *ids),
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
        with self._tx() as c:
            # The same conditional UPDATE as consume_challenge, inside the transaction that
            # writes the outcome: the decision and the challenge's single use commit together.
            cur = c.execute(
                "UPDATE challenges SET used = 1 WHERE id = ? AND used = 0 AND expires_at > ?",
                (challenge_id, now),
            )
            if cur.rowcount != 1:
                return False
            if record is not None:
                self._insert_attestation(record)
            self._append_audit_in_tx(*audit)
        return True

    def _insert_attestation(self, rec: AttestationRecord) -> None:
        self._conn().execute(
            "INSERT INTO attestations (jti, node_id, platform, challenge_id, claims,"
            " runtime_key_jkt, issued_at, expires_at, granted_keys, revocation_mark)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
            ),
        )

    def get_attestation(self, jti: str) -> AttestationRecord | None:
        rows = self._q(
            "SELECT jti, node_id, platform, challenge_id, claims, runtime_key_jkt, issued_at,"
            " expires_at, granted_keys, revocation_mark FROM attestations WHERE jti = ?",
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
        with self._tx():
            return self._append_audit_in_tx(make_entry, link)

    def _append_audit_in_tx(
        self, make_entry: Callable[[int], bytes], link: Callable[[bytes, bytes], bytes]
    ) -> AuditRow:
        c = self._conn()
        row = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq = int(row[0]) + 1 if row else 1
        prev = bytes(row[1]) if row else _GENESIS
        entry = make_entry(seq)
        h = link(prev, entry)
        c.execute("INSERT INTO audit (seq, entry, hash) VALUES (?, ?, ?)", (seq, entry, h))
        return AuditRow(seq, entry, h)

    def list_audit(
        self, after_seq: int = 0, limit: int = 1000, max_bytes: int = AUDIT_PAGE_BYTES
    ) -> list[AuditRow]:
        cur = self._conn().execute(
            "SELECT seq, entry, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        out: list[AuditRow] = []
        size = 0
        try:
            # Row by row, so a page of huge entries stops at the byte budget instead of
            # being fetched whole.
            for r in cur:
                out.append(rows_.audit_row(r))
                size += len(r[1])
                if size >= max_bytes:
                    break
        finally:
            cur.close()
        return out

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
        rows = self._q("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, _GENESIS)

    def audit_hash_at(self, seq: int) -> bytes | None:
        rows = self._q("SELECT hash FROM audit WHERE seq = ?", (seq,))
        return bytes(rows[0][0]) if rows else None

    # -- signing keys -----------------------------------------------------------------
    def add_signing_key(self, rec: SigningKeyRecord, retire_others_at: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE signing_keys SET retired_at = ? WHERE retired_at = 0", (retire_others_at,)
            )
            c.execute(
                "INSERT INTO signing_keys (kid, wrapped_private, public_jwk, created_at,"
                " retired_at, kek_id) VALUES (?, ?, ?, ?, 0, ?)",
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
            "SELECT name, wrapped, kek_id, created_at FROM secrets WHERE name = ?", (name,)
        )
        return rows_.secret(rows[0]) if rows else None

    def put_secret(self, rec: SecretRecord) -> SecretRecord:
        with self._tx() as c:
            c.execute(
                "INSERT INTO secrets (name, wrapped, kek_id, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (rec.name, rec.wrapped, rec.kek_id, rec.created_at),
            )
        stored = self.get_secret(rec.name)
        assert stored is not None
        return stored

    #: One query per kind, each (ref columns, blob, kek id) in a stable order.
    _WRAPPED = (
        (
            "key_version",
            "SELECT key_id, version, wrapped, kek_id FROM key_versions"
            " WHERE kek_id <> ? ORDER BY key_id, version LIMIT ?",
        ),
        (
            "signing_key",
            "SELECT kid, wrapped_private, kek_id FROM signing_keys"
            " WHERE kek_id <> ? ORDER BY kid LIMIT ?",
        ),
        (
            "secret",
            "SELECT name, wrapped, kek_id FROM secrets WHERE kek_id <> ? ORDER BY name LIMIT ?",
        ),
    )

    def list_wrapped(self, exclude_kek_id: str, limit: int = 100) -> list[WrappedItem]:
        out: list[WrappedItem] = []
        for kind, sql in self._WRAPPED:
            if len(out) >= limit:
                break
            for r in self._q(sql, (exclude_kek_id, limit - len(out))):
                ref = tuple(str(x) for x in r[:-2])
                out.append(WrappedItem(kind, ref, bytes(r[-2]), r[-1]))  # type: ignore[arg-type]
        return out

    def rewrap(self, item: WrappedItem, wrapped: bytes, kek_id: str) -> bool:
        if item.kind == "key_version":
            sql = (
                "UPDATE key_versions SET wrapped = ?, kek_id = ?"
                " WHERE key_id = ? AND version = ? AND wrapped = ?"
            )
            ref: tuple[Any, ...] = (item.ref[0], int(item.ref[1]))
        elif item.kind == "signing_key":
            sql = (
                "UPDATE signing_keys SET wrapped_private = ?, kek_id = ?"
                " WHERE kid = ? AND wrapped_private = ?"
            )
            ref = (item.ref[0],)
        else:
            sql = "UPDATE secrets SET wrapped = ?, kek_id = ? WHERE name = ? AND wrapped = ?"
            ref = (item.ref[0],)
        with self._tx() as c:
            n = c.execute(sql, (wrapped, kek_id, *ref, item.wrapped)).rowcount
        return bool(n == 1)

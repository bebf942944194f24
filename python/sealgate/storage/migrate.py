"""Copy a deployment's database to another backend (``sealgate storage migrate``).

Every table of ``schema.TABLES`` is copied row for row, values unchanged (audit entries and
hashes byte for byte, ``seq`` numbers kept), from one consistent snapshot of the source (one
read transaction: SQLite's WAL snapshot, PostgreSQL REPEATABLE READ READ ONLY) into one
transaction on the target, in batches of ``batch`` rows so memory stays bounded whatever the
size. The target must be empty (a fresh schema): a copy never merges into live data.

Afterwards, on the committed target: PostgreSQL identity sequences are advanced past the
copied ``seq`` values (``setval``, https://www.postgresql.org/docs/15/functions-sequence.html),
``config_generation`` is the source's, the row counts match the source's, and the audit log
is verified with ``sealgate.broker.audit.AuditLog.verify`` without the MAC key: the hash
chain's links and every entry's sequence number (entry MACs need the KEK and are not checked
here), and its head must equal the source's.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sealgate.errors import SealgateError
from sealgate.storage import Storage, StorageError, schema
from sealgate.storage.url import DatabaseUrl, open_storage, parse

#: Tables copied (schema_version is the target's own: both are at SCHEMA_VERSION).
COPIED = tuple(t for t in schema.TABLES if t != "schema_version")

#: Row order of each table (its primary key), so a copy is deterministic and resumable by eye.
ORDER = {
    "config_generation": "generation",
    "challenges": "id",
    "reference_values": "id",
    "policies": "key_id",
    "model_keys": "key_id",
    "key_versions": "key_id, version",
    "model_registrations": "key_id, version",
    "enrollments": "id",
    "nodes": "node_id",
    "attestations": "jti",
    "revocations": "seq",
    "audit": "seq",
    "signing_keys": "kid",
    "secrets": "name",
}


class MigrateError(SealgateError):
    pass


@dataclass
class MigrateReport:
    source: str
    target: str
    tables: dict[str, int] = field(default_factory=dict)
    config_generation: int = 0
    schema_version: int = schema.SCHEMA_VERSION
    audit_entries: int = 0
    audit_head_seq: int = 0
    audit_message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "schema_version": self.schema_version,
            "tables": dict(self.tables),
            "config_generation": self.config_generation,
            "audit": {
                "entries": self.audit_entries,
                "head_seq": self.audit_head_seq,
                "verified": True,
                "checked": "hash chain links and sequence numbers (entry MACs need the KEK:"
                " not checked)",
                "message": self.audit_message,
            },
        }


class _Side:
    """One database, opened raw (DB-API) for the copy."""

    def __init__(self, db: DatabaseUrl) -> None:
        self.db = db
        self.sqlite: sqlite3.Connection | None = None
        self.pg: Any = None
        if db.backend == "sqlite":
            self.sqlite = sqlite3.connect(db.target, isolation_level=None)
            self.sqlite.execute("PRAGMA busy_timeout=10000")
        else:
            import psycopg

            try:
                self.pg = psycopg.connect(db.target, connect_timeout=5, autocommit=True)
            except psycopg.OperationalError:
                raise StorageError(
                    "storage.unavailable", f"database {db.redacted()}: cannot connect"
                ) from None

    @property
    def mark(self) -> str:
        return "?" if self.sqlite is not None else "%s"

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            self.pg.close()

    def count(self, table: str) -> int:
        sql = f"SELECT COUNT(*) FROM {table}"  # noqa: S608 (fixed names)
        if self.sqlite is not None:
            return int(self.sqlite.execute(sql).fetchone()[0])
        return int(self.pg.execute(sql).fetchone()[0])

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside sees one state of the database."""
        if self.sqlite is not None:
            self.sqlite.execute("BEGIN")
            try:
                yield
            finally:
                self.sqlite.execute("COMMIT")
        else:
            self.pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield
            finally:
                self.pg.execute("COMMIT")

    def rows(self, table: str, batch: int) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
        sql = f"SELECT * FROM {table} ORDER BY {ORDER[table]}"  # noqa: S608 (fixed names)
        if self.sqlite is not None:
            cur = self.sqlite.execute(sql)
        else:
            # A server-side cursor: the server keeps the result, we hold one batch.
            cur = self.pg.cursor(name=f"sealgate_migrate_{table}")
            cur.itersize = batch
            cur.execute(sql)
        cols = [d[0] for d in cur.description]

        def pages() -> Iterator[list[tuple[Any, ...]]]:
            try:
                while True:
                    page = cur.fetchmany(batch)
                    if not page:
                        return
                    yield [tuple(r) for r in page]
            finally:
                cur.close()

        return cols, pages()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        if self.sqlite is not None:
            self.sqlite.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.sqlite.execute("ROLLBACK")
                raise
            self.sqlite.execute("COMMIT")
        else:
            with self.pg.transaction():
                yield

    def insert(self, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join(self.mark for _ in cols)
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"  # noqa: S608
        if self.sqlite is not None:
            self.sqlite.executemany(sql, rows)
        else:
            with self.pg.cursor() as cur:
                cur.executemany(sql, rows)

    def set_generation(self, generation: int) -> None:
        sql = f"UPDATE config_generation SET generation = {self.mark}"  # noqa: S608
        if self.sqlite is not None:
            self.sqlite.execute(sql, (generation,))
        else:
            self.pg.execute(sql, (generation,))

    def advance_identities(self) -> None:
        """Move PostgreSQL's identity sequences past the copied seq values, so the next
        INSERT without ``seq`` (revocations) never collides with a copied row."""
        if self.pg is None:
            return  # SQLite's rowid alias takes max(seq) + 1 by itself
        for table in schema.IDENTITY_TABLES:
            top = f"COALESCE((SELECT MAX(seq) FROM {table}), 0) + 1"  # noqa: S608 (fixed)
            self.pg.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, 'seq'), {top}, false)", (table,)
            )


def _open(db: DatabaseUrl, create: bool) -> Storage:
    # Opening through the Storage classes brings the schema to SCHEMA_VERSION (and creates
    # a SQLite target 0600 with it).
    return open_storage(db, create=create)


def migrate_storage(
    source: str | DatabaseUrl,
    target: str | DatabaseUrl,
    *,
    batch: int = 500,
    progress: Callable[[str, int], None] | None = None,
) -> MigrateReport:
    """Copy ``source`` into the empty ``target``; return what was copied. Raises
    ``MigrateError`` (``storage.migrate.*``) or ``StorageError``."""
    src_db = source if isinstance(source, DatabaseUrl) else parse(source)
    dst_db = target if isinstance(target, DatabaseUrl) else parse(target)
    if src_db == dst_db:
        raise MigrateError("storage.migrate.same_database", "source and target are the same")
    batch = max(1, min(batch, 10_000))
    src_st = _open(src_db, create=False)
    dst_st = _open(dst_db, create=True)
    report = MigrateReport(src_db.redacted(), dst_db.redacted())
    src = _Side(src_db)
    dst = _Side(dst_db)
    try:
        # Empty: no rows but the fresh schema's own (config_generation's single row).
        used = {t: dst.count(t) for t in COPIED if t != "config_generation"}
        nonempty = sorted(t for t, n in used.items() if n)
        if nonempty:
            raise MigrateError(
                "storage.migrate.target_not_empty",
                f"target {report.target} already holds data (tables: {', '.join(nonempty)});"
                " migrate only into an empty database",
            )
        src_head: tuple[int, bytes] = (0, bytes(32))
        with src.snapshot(), dst.write():
            for table in COPIED:
                cols, pages = src.rows(table, batch)
                n = 0
                if table == "config_generation":
                    for page in pages:
                        for row in page:
                            report.config_generation = int(row[0])
                            n += 1
                    report.tables[table] = n
                    continue
                for page in pages:
                    dst.insert(table, cols, page)
                    n += len(page)
                    if table == "audit":
                        last = page[-1]
                        src_head = (int(last[cols.index("seq")]), bytes(last[cols.index("hash")]))
                    if progress is not None:
                        progress(table, n)
                report.tables[table] = n
            # After the inserts: their triggers moved the target's counter.
            dst.set_generation(report.config_generation)
            dst.advance_identities()
            src_counts = {t: src.count(t) for t in COPIED}
        dst_counts = {t: dst.count(t) for t in COPIED}
        if dst_counts != src_counts:
            raise MigrateError(
                "storage.migrate.verify_failed",
                f"row counts differ after the copy: source {src_counts}, target {dst_counts}",
            )
        _verify_audit(dst_st, src_head, report)
    finally:
        src.close()
        dst.close()
        src_st.close()
        dst_st.close()
    return report


def _verify_audit(st: Storage, src_head: tuple[int, bytes], report: MigrateReport) -> None:
    from sealgate.broker.audit import AuditLog

    verdict = AuditLog(st, mac=None).verify()
    if not verdict.ok:
        raise MigrateError(
            "storage.migrate.verify_failed",
            f"the audit chain on the target does not verify at entry {verdict.first_bad_seq}:"
            f" {verdict.code}: {verdict.message}",
        )
    head = st.audit_head()
    if head != src_head:
        raise MigrateError(
            "storage.migrate.verify_failed",
            f"the target's audit head is {head[0]}, the source's {src_head[0]}",
        )
    report.audit_entries = verdict.entries
    report.audit_head_seq = head[0]
    report.audit_message = verdict.message


__all__ = ["COPIED", "MigrateError", "MigrateReport", "migrate_storage"]

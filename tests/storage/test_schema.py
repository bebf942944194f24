"""Both backends end at the same schema, and SQLite's is the one released versions created.

Each database is described from its own catalog (SQLite's PRAGMAs and ``sqlite_master``,
PostgreSQL's ``information_schema`` and ``pg_catalog``) and normalised: types to
int/text/bytes, defaults without casts, SQLite's rowid alias and PostgreSQL's identity column
both to "identity", trigger bodies to what they do. The descriptions must be equal; a changed
step (a type, a default, an index predicate, a trigger) must make them differ.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sealgate.storage import schema
from sealgate.storage.postgres import PostgresStorage
from sealgate.storage.sqlite import SqliteStorage

_TYPES = {"integer": "int", "bigint": "int", "text": "text", "blob": "bytes", "bytea": "bytes"}
_BUMP = "update config_generation set generation = generation + 1"


def _norm_default(d: str | None) -> str | None:
    if d is None:
        return None
    return re.sub(r"::[a-z ]+$", "", d.strip())


def _norm_pred(p: str | None) -> str | None:
    if p is None:
        return None
    return re.sub(r"[()\s]", "", p).lower()


def _action(body: str) -> str:
    text = " ".join(body.lower().split())
    return "bump_generation" if _BUMP in text else text


def describe_sqlite(path: str) -> dict[str, Any]:
    c = sqlite3.connect(path)
    try:
        out: dict[str, Any] = {}
        tables = [
            r[0]
            for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for t in tables:
            info = c.execute(f"PRAGMA table_info({t})").fetchall()
            pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            cols = []
            for _cid, name, typ, notnull, dflt, pkpos in info:
                # A lone INTEGER PRIMARY KEY is the rowid alias: numbered when omitted.
                identity = pkpos == 1 and len(pk) == 1 and typ.upper() == "INTEGER"
                # SQLite lets a non-INTEGER PRIMARY KEY hold NULL (a documented quirk,
                # sqlite.org/lang_createtable.html#the_primary_key); sealgate never writes one.
                nullable = not (notnull or pkpos)
                cols.append(
                    (name, _TYPES[typ.lower()], nullable, _norm_default(dflt), bool(identity))
                )
            fks = sorted(
                (r[3], r[2], r[4]) for r in c.execute(f"PRAGMA foreign_key_list({t})").fetchall()
            )
            indexes = {}
            for _seq, iname, unique, origin, partial in c.execute(f"PRAGMA index_list({t})"):
                if origin == "pk":
                    continue
                icols = [r[2] for r in c.execute(f"PRAGMA index_info({iname})")]
                pred = None
                if partial:
                    (sql,) = c.execute(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (iname,)
                    ).fetchone()
                    pred = sql.split(" WHERE ", 1)[1]
                indexes[iname] = (bool(unique), icols, _norm_pred(pred))
            triggers = {}
            for name, sql in c.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                (t,),
            ):
                m = re.search(r"\b(BEFORE|AFTER)\s+(INSERT|UPDATE|DELETE)\b", sql, re.I)
                assert m is not None
                body = sql.split(" BEGIN ", 1)[1]
                triggers[name] = (m.group(1).upper(), m.group(2).upper(), "ROW", _action(body))
            out[t] = {
                "columns": cols,
                "pk": pk,
                "fks": fks,
                "indexes": indexes,
                "triggers": triggers,
            }
        return out
    finally:
        c.close()


def describe_postgres(url: str) -> dict[str, Any]:
    with psycopg.connect(url, connect_timeout=5) as c:
        out: dict[str, Any] = {}
        tables = [
            r[0]
            for r in c.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema ="
                " current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]
        for t in tables:
            cols = [
                (name, _TYPES[typ], nullable == "YES", _norm_default(dflt), ident == "YES")
                for name, typ, nullable, dflt, ident in c.execute(
                    "SELECT column_name, data_type, is_nullable, column_default, is_identity"
                    " FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND table_name = %s ORDER BY ordinal_position",
                    (t,),
                )
            ]
            pk_row = c.execute(
                "SELECT ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)"
                " JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n"
                " ORDER BY k.i) FROM pg_constraint con WHERE con.conrelid = %s::regclass"
                " AND con.contype = 'p'",
                (t,),
            ).fetchone()
            fks = sorted(
                (src, ref, dst)
                for src, ref, dst in c.execute(
                    "SELECT a.attname, rc.relname, ra.attname FROM pg_constraint con"
                    " JOIN pg_class rc ON rc.oid = con.confrelid"
                    " JOIN pg_attribute a ON a.attrelid = con.conrelid"
                    " AND a.attnum = con.conkey[1]"
                    " JOIN pg_attribute ra ON ra.attrelid = con.confrelid"
                    " AND ra.attnum = con.confkey[1]"
                    " WHERE con.conrelid = %s::regclass AND con.contype = 'f'",
                    (t,),
                )
            )
            indexes = {}
            for iname, unique, icols, pred in c.execute(
                "SELECT ic.relname, i.indisunique, ARRAY(SELECT a.attname FROM"
                " unnest(i.indkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),"
                " pg_get_expr(i.indpred, i.indrelid) FROM pg_index i"
                " JOIN pg_class ic ON ic.oid = i.indexrelid"
                " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
                (t,),
            ):
                indexes[iname] = (bool(unique), list(icols), _norm_pred(pred))
            triggers = {}
            for name, timing, event, orientation, fn_src in c.execute(
                "SELECT t.tgname,"
                " CASE WHEN t.tgtype & 2 = 2 THEN 'BEFORE' ELSE 'AFTER' END,"
                " CASE WHEN t.tgtype & 4 = 4 THEN 'INSERT' WHEN t.tgtype & 8 = 8 THEN 'DELETE'"
                " WHEN t.tgtype & 16 = 16 THEN 'UPDATE' ELSE 'OTHER' END,"
                " CASE WHEN t.tgtype & 1 = 1 THEN 'ROW' ELSE 'STATEMENT' END, p.prosrc"
                " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                " WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal",
                (t,),
            ):
                triggers[name] = (timing, event, orientation, _action(fn_src))
            out[t] = {
                "columns": cols,
                "pk": list(pk_row[0]) if pk_row else [],
                "fks": fks,
                "indexes": indexes,
                "triggers": triggers,
            }
        return out


def _sqlite_from_steps(path: Path, steps: list[tuple[int, list[schema.Statement]]]) -> str:
    c = sqlite3.connect(path)
    c.execute(schema.SCHEMA_VERSION_TABLE["sqlite"])
    for version, statements in schema.render("sqlite", steps):
        for sql in statements:
            c.execute(sql)
        c.execute("INSERT INTO schema_version VALUES (?)", (version,))
    c.commit()
    c.close()
    return str(path)


def test_both_backends_end_at_the_same_schema(tmp_path: Path, pg_url: str) -> None:
    SqliteStorage(tmp_path / "s.db").close()
    PostgresStorage(pg_url).close()
    lite = describe_sqlite(str(tmp_path / "s.db"))
    pg = describe_postgres(pg_url)
    assert set(lite) == set(schema.TABLES)
    assert lite == pg
    # What the description covers is not empty: the comparison has teeth.
    assert lite["revocations"]["indexes"]["revocations_in_force"] == (
        True,
        ["platform", "identity"],
        "lifted_at=0",
    )
    assert lite["audit"]["columns"][0] == ("seq", "int", False, None, True)
    assert len([t for d in lite.values() for t in d["triggers"]]) == 21  # 7 tables, 3 events each


def _mutate(
    step: int, index: int, new: schema.Statement | None
) -> list[tuple[int, list[schema.Statement]]]:
    steps = copy.deepcopy(schema.STEPS)
    statements = steps[step - 1][1]
    if new is None:
        del statements[index]
    else:
        statements[index] = new
    return steps


@pytest.mark.parametrize(
    "mutation",
    [
        # a type (step 1: the challenge nonce as TEXT)
        lambda: _mutate(
            1,
            0,
            str(schema.STEPS[0][1][0]).replace("nonce BLOB NOT NULL", "nonce TEXT NOT NULL"),
        ),
        # a nullability (step 5)
        lambda: _mutate(
            5, 1, str(schema.STEPS[4][1][1]).replace("kek_id TEXT NOT NULL", "kek_id TEXT")
        ),
        # a default (step 4)
        lambda: _mutate(4, 0, str(schema.STEPS[3][1][0]).replace("DEFAULT '[]'", "DEFAULT '{}'")),
        # the partial index's predicate (step 3)
        lambda: _mutate(
            3, 2, "CREATE UNIQUE INDEX revocations_in_force ON revocations (platform, identity)"
        ),
        # a trigger gone (step 4)
        lambda: _mutate(4, 2, None),
        # the rowid alias lost (step 3: seq as a plain column in a composite key)
        lambda: _mutate(
            3,
            0,
            str(schema.STEPS[2][1][0]).replace("seq INTEGER PRIMARY KEY,", "seq INTEGER NOT NULL,"),
        ),
    ],
)
def test_a_changed_step_is_caught(tmp_path: Path, pg_url: str, mutation: Any) -> None:
    PostgresStorage(pg_url).close()
    pg = describe_postgres(pg_url)
    same = describe_sqlite(_sqlite_from_steps(tmp_path / "same.db", schema.STEPS))
    assert same == pg
    changed = describe_sqlite(_sqlite_from_steps(tmp_path / "changed.db", mutation()))
    assert changed != pg


#: SHA-256 of the schema SQL (sqlite_master, ordered by name) that release 5 of the SQLite
#: migrations created, computed from that release's sqlite.py: existing databases carry it.
RELEASED_SQLITE_SCHEMA_SHA256 = "01ee2f8c849c675dc19fd476b24f4aaa48facef3aabb0e782998d502bef4782e"


def _sqlite_master_digest(path: Path) -> str:
    c = sqlite3.connect(path)
    rows = c.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall()
    c.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


#: The same after release 6 (model_registrations and its generation triggers).
RELEASED_6_SQLITE_SCHEMA_SHA256 = "dc72fee34aae61758046dc08c907dddac40af3d83de097e13f8c94a659ad631b"


#: The same after release 7 (the revocations table's generation triggers).
RELEASED_7_SQLITE_SCHEMA_SHA256 = "71df724ec4c2b9b0e82b8562132508cb029a5a2a68abd0645898192bc44417af"


def test_sqlite_schema_text_is_the_released_one(tmp_path: Path) -> None:
    # Released steps never change: steps 1-5 still give release 5's text, 1-6 release 6's,
    # all of them 7's.
    five = _sqlite_from_steps(tmp_path / "five.db", [s for s in schema.STEPS if s[0] <= 5])
    assert _sqlite_master_digest(Path(five)) == RELEASED_SQLITE_SCHEMA_SHA256
    six = _sqlite_from_steps(tmp_path / "six.db", [s for s in schema.STEPS if s[0] <= 6])
    assert _sqlite_master_digest(Path(six)) == RELEASED_6_SQLITE_SCHEMA_SHA256
    SqliteStorage(tmp_path / "s.db").close()
    assert _sqlite_master_digest(tmp_path / "s.db") == RELEASED_7_SQLITE_SCHEMA_SHA256

"""Database URLs: ``sqlite:///PATH`` and ``postgresql://USER@HOST:PORT/DB`` (libpq's URI form,
https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).

The password never travels in a URL sealgate is given on the command line (argv is readable
by every local user): a URL carrying one is refused, and libpq's own ``PGPASSWORD`` and
``passfile`` (``~/.pgpass``, ``PGPASSFILE``, ``?passfile=``) supply it instead. A URL in the
configuration file may carry one (the file is the operator's to protect); ``redact`` is what
logs, errors and ``describe`` ever show of a URL.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sealgate.errors import UsageError
from sealgate.storage import Storage

Backend = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class DatabaseUrl:
    backend: Backend
    #: The SQLite file, or the libpq connection URI (password included when it had one).
    target: str

    def redacted(self) -> str:
        return redact(self.target) if self.backend == "postgresql" else f"sqlite://{self.target}"


def redact(url: str) -> str:
    """``url`` without its password (``postgresql://u:***@h/db``); anything unparsable is
    shown only by its scheme."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{host}"
        query = urllib.parse.urlencode(
            [
                (k, "***" if k.lower() == "password" else v)
                for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            ]
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return url.split(":", 1)[0] + "://…"


def has_password(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    query = urllib.parse.parse_qs(parts.query)
    return ":" in userinfo or "password" in {k.lower() for k in query}


def parse(url: str, *, from_argv: bool = False) -> DatabaseUrl:
    """Parse a database URL; ``from_argv`` refuses one that carries a password."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite://") :]
        if path in ("/", "") or "?" in path or "#" in path:
            raise UsageError("config.database.invalid", "sqlite URLs are sqlite:///ABSOLUTE/PATH")
        return DatabaseUrl("sqlite", urllib.parse.unquote(path))
    if url.startswith(("postgresql://", "postgres://")):
        if from_argv and has_password(url):
            raise UsageError(
                "config.database.password_in_argv",
                "a database password on the command line is readable by every local user;"
                " use PGPASSWORD, a passfile (~/.pgpass) or the configuration file",
            )
        try:
            urllib.parse.urlsplit(url).port  # noqa: B018 (validates the port)
        except ValueError:
            raise UsageError(
                "config.database.invalid", f"malformed database URL {redact(url)}"
            ) from None
        return DatabaseUrl("postgresql", url)
    raise UsageError(
        "config.database.invalid",
        f"unsupported database URL {redact(url)}: use sqlite:///PATH or postgresql://…",
    )


def default_url(data_dir: str | os.PathLike[str]) -> str:
    return "sqlite://" + str(Path(data_dir).absolute() / "sealgate.db")


#: Connections a server's storage may hold beyond its worker threads: the group-commit
#: thread, the readiness probe, housekeeping, checkpoints and one spare. Fewer, and a
#: busy pool makes calls wait for a connection, and a pool timeout flips readiness.
POOL_EXTRA = 5


def open_storage(
    url: str | DatabaseUrl, *, create: bool = True, workers: int | None = None
) -> Storage:
    """Open (and migrate) the storage a URL names. ``create=False`` refuses a SQLite file
    that does not exist yet (offline tools read a deployment, they never start one).
    ``workers``: the threads that will call it at once (a server's pool), which sizes a
    PostgreSQL connection pool (``workers + POOL_EXTRA + bridge.MAX_CALLS``; default 16)."""
    db = url if isinstance(url, DatabaseUrl) else parse(url)
    if db.backend == "sqlite":
        from sealgate.storage.sqlite import SqliteStorage

        if not create and not Path(db.target).exists():
            raise UsageError("storage.not_found", f"no database at {db.target}")
        return SqliteStorage(db.target)
    from sealgate.storage.postgres import PostgresStorage

    if workers is None:
        return PostgresStorage(db.target)
    from sealgate.storage import bridge

    # The thread pool's calls, the service's own threads, and the hot path's calls on the
    # event loop (at most bridge.MAX_CALLS, one connection each).
    return PostgresStorage(db.target, pool_max=max(1, workers) + POOL_EXTRA + bridge.MAX_CALLS)

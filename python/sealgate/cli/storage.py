"""``sealgate storage ...``: database tools (copy a deployment between backends)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sealgate.errors import SealgateError


def register(sub: Any) -> None:
    p = sub.add_parser("storage", help="database tools")
    ssub = p.add_subparsers(dest="storage_command", required=True, parser_class=type(p))
    m = ssub.add_parser(
        "migrate",
        help="copy every table of a deployment into an empty database (SQLite <-> PostgreSQL)",
        description="Copy every table (audit log byte for byte) from --from into the empty "
        "database --to, in one transaction, then verify the audit chain on the target "
        "(links and sequence numbers; entry MACs need the KEK and are not checked). URLs: "
        "sqlite:///PATH or postgresql://USER@HOST:PORT/DB; a password never goes on the "
        "command line (use PGPASSWORD or a passfile).",
    )
    m.add_argument("--from", dest="source", required=True, metavar="URL")
    m.add_argument("--to", dest="target", required=True, metavar="URL")
    m.add_argument("--batch", type=int, default=500, help="rows per batch (bounded memory)")
    m.add_argument("--quiet", action="store_true", help="no progress on stderr")
    m.set_defaults(handler=_migrate, json_errors=True)


def _migrate(args: argparse.Namespace) -> int:
    from sealgate.cli import emit
    from sealgate.storage import StorageError
    from sealgate.storage.migrate import migrate_storage
    from sealgate.storage.url import parse

    # from_argv: a URL carrying a password is refused before anything connects.
    source = parse(args.source, from_argv=True)
    target = parse(args.target, from_argv=True)

    def progress(table: str, n: int) -> None:
        if not args.quiet and n % (args.batch * 20) == 0:
            print(f"sealgate: {table}: {n} rows", file=sys.stderr)

    try:
        report = migrate_storage(source, target, batch=args.batch, progress=progress)
    except StorageError as e:
        raise SealgateError(e.code, e.message) from None
    emit(report.as_dict())
    return 0

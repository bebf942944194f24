"""``sealgate kek rotate``: re-wrap every stored key under another KEK (docs/kek.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sealgate.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("kek", help="key-encryption key tools (offline, on the database)")
    ksub = p.add_subparsers(dest="kek_command", required=True, parser_class=type(p))
    r = ksub.add_parser(
        "rotate",
        help="re-wrap every model key, signing key and service secret under --to "
        "(safe to interrupt and run again)",
    )
    r.add_argument(
        "--to",
        required=True,
        metavar="URI",
        help="the target KEK: file:///PATH or pkcs11:…?module-path=…&pin-source=file:… "
        "(created if absent)",
    )
    r.add_argument("--config", help="the service configuration (its kek and kek_previous)")
    r.add_argument("--data-dir", help="state directory (default: the configuration's)")
    r.add_argument(
        "--database",
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default: the configuration's;"
        " the password from PGPASSWORD or a passfile, never the command line)",
    )
    r.add_argument(
        "--batch", type=int, default=100, help="items per listing (default 100; 1..10000)"
    )
    r.set_defaults(handler=_rotate)


def _rotate(args: argparse.Namespace) -> int:
    from sealgate.broker.audit import AuditLog
    from sealgate.broker.auditkeys import load_audit_keys
    from sealgate.broker.kek import KekRing, open_kek
    from sealgate.broker.rotate import RotationResult, rotate
    from sealgate.cli import emit
    from sealgate.service.config import load_config
    from sealgate.service.core import kek_ring
    from sealgate.storage import url as dburl

    if not 1 <= args.batch <= 10_000:
        raise UsageError("cli.usage.bad_batch", "--batch must be 1..10000")
    cfg = load_config(args.config, data_dir=args.data_dir)
    # ``database:`` in the configuration when it has one, else the data dir's SQLite file.
    configured = getattr(cfg, "database", None)
    db = (
        dburl.parse(args.database, from_argv=True)
        if args.database
        else dburl.parse(configured or dburl.default_url(cfg.data_dir))
    )
    st = dburl.open_storage(db, create=False)
    try:
        ring = kek_ring(cfg, create=False)
        try:
            target = open_kek(args.to, create=True)
            try:
                # Unwraps with every configured KEK and the target (a re-run, or a target
                # already in kek_previous, finds items under it too).
                unwrap = KekRing(ring.primary, [*ring.previous, target])
                # The audit keys must be stored secrets before the move: under a KEK that
                # cannot derive them (an HSM's) they could not be made again afterwards.
                keys = load_audit_keys(st, unwrap)
                log = AuditLog(st, keys.mac())

                def progress(res: RotationResult) -> None:
                    moved = sum(res.moved.values())
                    print(
                        f"sealgate: kek rotate: batch {res.batches}, {moved} moved",
                        file=sys.stderr,
                        flush=True,
                    )

                res = rotate(st, unwrap, target, log, batch=args.batch, progress=progress)
                doc = res.doc()
                doc["target_configured"] = target.kek_id in ring.kek_ids()
                emit(doc)
            finally:
                target.close()
        finally:
            ring.close()
    finally:
        st.close()
    return 0

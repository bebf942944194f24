"""``sealgate audit ...``: offline audit log tools on the data directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealgate.errors import UsageError

if TYPE_CHECKING:
    from sealgate.broker.audit import AuditVerdict
    from sealgate.broker.auditkeys import AuditKeys
    from sealgate.broker.checkpoint import CheckpointStore
    from sealgate.service.config import ServiceConfig
    from sealgate.storage import Storage


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="audit log tools (offline, on the data directory)")
    asub = p.add_subparsers(dest="audit_command", required=True, parser_class=type(p))
    v = asub.add_parser(
        "verify", help="verify the audit hash chain, its entry MACs and its signed checkpoints"
    )
    v.add_argument("--data-dir", default="sealgate-data")
    v.add_argument(
        "--database",
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default: DATA_DIR/sealgate.db;"
        " the password from PGPASSWORD or a passfile, never the command line)",
    )
    v.add_argument(
        "--kek",
        metavar="URI",
        help="the deployment's KEK (file:///PATH or pkcs11:…), to open the audit keys "
        "stored in the database (default: DATA_DIR/kek.key when it exists)",
    )
    v.add_argument(
        "--kek-previous",
        action="append",
        default=[],
        metavar="URI",
        help="a previous KEK, while a rotation is under way (repeatable)",
    )
    v.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="also check against this signed checkpoint (one an auditor kept); repeatable",
    )
    v.add_argument(
        "--checkpoint-key",
        metavar="FILE",
        help="the checkpoint verifier key (GET /audit/checkpoint-key) instead of the one "
        "derived from the data directory's KEK",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=_audit_verify_offline)


def _audit_verify_offline(args: argparse.Namespace) -> int:
    from sealgate.broker.auditkeys import load_audit_keys
    from sealgate.broker.checkpoint import (
        MAX_NOTE_BYTES,
        CheckpointStore,
    )
    from sealgate.broker.kek import KekRing
    from sealgate.cli import read_file
    from sealgate.service.config import ServiceConfig
    from sealgate.service.core import kek_ring
    from sealgate.storage import url as dburl

    cfg = ServiceConfig(data_dir=Path(args.data_dir), kek=args.kek, kek_previous=args.kek_previous)
    db = dburl.parse(args.database or dburl.default_url(cfg.data_dir), from_argv=True)
    if db.backend == "sqlite" and not Path(db.target).exists():
        raise UsageError("cli.audit.no_database", f"no database at {db.target}")
    kept = [(f, read_file(f, "checkpoint", MAX_NOTE_BYTES)) for f in args.checkpoint]
    store = CheckpointStore(cfg.audit_checkpoint_dir)
    st = dburl.open_storage(db, create=False)
    try:
        # The KEK when one is given or the data directory has it: it opens the audit keys
        # (entry MACs, and the checkpoint key unless one is given). Never created here.
        ring: KekRing | None = None
        if args.kek or cfg.kek_path.exists():
            ring = kek_ring(cfg, create=False)
        keys: AuditKeys | None = None
        try:
            keys = load_audit_keys(st, ring, create=False) if ring is not None else None
        finally:
            if ring is not None:
                ring.close()
        v = _verify(args, st, store, kept, keys, cfg)
    finally:
        st.close()
    return _report(args, v)


def _verify(
    args: argparse.Namespace,
    st: Storage,
    store: CheckpointStore,
    kept: list[tuple[str, bytes]],
    keys: AuditKeys | None,
    cfg: ServiceConfig,
) -> AuditVerdict:
    from sealgate.broker.audit import AuditLog, EntryMac
    from sealgate.broker.checkpoint import CheckpointError, NoteVerifier, parse_verifier_key
    from sealgate.cli import read_file

    mac: EntryMac | None = keys.mac() if keys is not None else None
    if args.checkpoint_key:
        text = read_file(args.checkpoint_key, "checkpoint key", 4096)
        verifier = parse_verifier_key(text.decode("utf-8", "replace"))
    elif keys is not None:
        # The key name is the log's origin, the first line of its checkpoints; the key
        # itself is the stored checkpoint key, so a checkpoint signed by any other fails.
        first = (store.latest() or (kept[0][1] if kept else b"")).split(b"\n", 1)[0]
        verifier = NoteVerifier(first.decode("utf-8", "replace"), keys.signer().public_key())
    else:
        raise UsageError(
            "cli.audit.no_key",
            f"no KEK at {cfg.kek_path}: give --kek URI or --checkpoint-key "
            "(GET /audit/checkpoint-key)",
        )
    log = AuditLog(st, mac)
    # An auditor's own checkpoint anchors on its own; without one, the data directory's
    # checkpoints are required.
    try:
        stored = bool(store.all())
    except (CheckpointError, OSError):
        stored = True  # there, but unreadable: verify_anchored names it
    use_store = store if not kept or stored else None
    return log.verify_anchored(use_store, verifier, kept)


def _report(args: argparse.Namespace, v: AuditVerdict) -> int:
    if args.json:
        print(
            json.dumps(
                {
                    "ok": v.ok,
                    "entries": v.entries,
                    "first_bad_seq": v.first_bad_seq,
                    "code": v.code,
                    "message": v.message,
                    "anchored": v.anchored,
                    "authenticated": v.authenticated,
                },
                indent=2,
            )
        )
    elif v.ok:
        print(f"audit chain OK: {v.message}")
    else:
        print(f"audit chain BROKEN at entry {v.first_bad_seq}: {v.code}: {v.message}")
    return 0 if v.ok else 1

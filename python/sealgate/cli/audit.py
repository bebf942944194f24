"""``sealgate audit ...``: offline audit log tools on the data directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sealgate.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="audit log tools (offline, on the data directory)")
    asub = p.add_subparsers(dest="audit_command", required=True, parser_class=type(p))
    v = asub.add_parser(
        "verify", help="verify the audit hash chain, its entry MACs and its signed checkpoints"
    )
    v.add_argument("--data-dir", default="sealgate-data")
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
    from sealgate.broker.audit import AuditLog, EntryMac
    from sealgate.broker.checkpoint import (
        MAX_NOTE_BYTES,
        CheckpointError,
        CheckpointStore,
        NoteVerifier,
        parse_verifier_key,
    )
    from sealgate.broker.kek import LocalKeyFileProvider
    from sealgate.cli import read_file
    from sealgate.service.config import ServiceConfig
    from sealgate.storage.sqlite import SqliteStorage

    cfg = ServiceConfig(data_dir=Path(args.data_dir))
    if not cfg.db_path.exists():
        raise UsageError("cli.audit.no_database", f"no database at {cfg.db_path}")
    kept = [(f, read_file(f, "checkpoint", MAX_NOTE_BYTES)) for f in args.checkpoint]
    store = CheckpointStore(cfg.audit_checkpoint_dir)
    # The KEK when the data directory has it (entry MACs, and the checkpoint key unless
    # one is given); never created here.
    kek = LocalKeyFileProvider(cfg.kek_path, create=False) if cfg.kek_path.exists() else None
    mac: EntryMac | None = kek.audit_mac if kek is not None else None
    if args.checkpoint_key:
        text = read_file(args.checkpoint_key, "checkpoint key", 4096)
        verifier = parse_verifier_key(text.decode("utf-8", "replace"))
    elif kek is not None:
        # The key name is the log's origin, the first line of its checkpoints; the key
        # itself comes from the KEK, so a checkpoint signed by any other key fails.
        first = (store.latest() or (kept[0][1] if kept else b"")).split(b"\n", 1)[0]
        verifier = NoteVerifier(
            first.decode("utf-8", "replace"), kek.checkpoint_signer().public_key()
        )
    else:
        raise UsageError(
            "cli.audit.no_key",
            f"no KEK at {cfg.kek_path}: give --checkpoint-key (GET /audit/checkpoint-key)",
        )
    st = SqliteStorage(cfg.db_path)
    try:
        log = AuditLog(st, mac)
        # An auditor's own checkpoint anchors on its own; without one, the data directory's
        # checkpoints are required.
        try:
            stored = bool(store.all())
        except (CheckpointError, OSError):
            stored = True  # there, but unreadable: verify_anchored names it
        use_store = store if not kept or stored else None
        v = log.verify_anchored(use_store, verifier, kept)
    finally:
        st.close()
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

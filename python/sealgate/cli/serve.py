"""``sealgate serve``: run the verifier service (``sealgate.service.supervisor``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the verifier service (gRPC + HTTP side port)")
    p.add_argument("--config", help="JSON or YAML configuration file")
    p.add_argument("--listen", help="gRPC HOST:PORT (default 127.0.0.1:50051)")
    p.add_argument("--http-listen", help="metrics/JWKS/health HOST:PORT (default 127.0.0.1:9090)")
    p.add_argument("--data-dir", help="state directory (default ./sealgate-data)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to drain on SIGTERM")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    p.add_argument(
        "--database",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default: sqlite in the data dir;"
        " the password comes from PGPASSWORD or a passfile, never from here)",
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from sealgate.errors import SealgateError
    from sealgate.service.config import load_config
    from sealgate.service.supervisor import serve
    from sealgate.storage import StorageError
    from sealgate.storage.url import parse

    if args.database is not None:
        # Before anything else: argv is readable by every local user (ps, /proc).
        parse(args.database, from_argv=True)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(
        args.config,
        listen=args.listen,
        http_listen=args.http_listen,
        data_dir=args.data_dir,
        workers=args.workers,
        database=args.database,
    )
    try:
        return serve(cfg, args.grace)
    except StorageError as e:
        # The database unreachable at start (or refusing the schema): its stable code and
        # the storage's message, which names the database only redacted.
        raise SealgateError(e.code, e.message) from None

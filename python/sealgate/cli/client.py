"""What the service commands share: client connection flags and channels, RPC error
reporting, key files and 0600 secret files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from sealgate.errors import UsageError

DEFAULT_SERVER = "127.0.0.1:50051"


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        default=os.environ.get("SEALGATE_SERVER", DEFAULT_SERVER),
        help=f"HOST:PORT (default {DEFAULT_SERVER}, env SEALGATE_SERVER)",
    )
    p.add_argument("--tls-ca", help="CA bundle to verify the server (enables TLS)")
    p.add_argument("--tls-cert", help="client certificate for mTLS")
    p.add_argument("--tls-key", help="client key for mTLS")
    p.add_argument("--timeout", type=float, default=30.0)


def channel(args: argparse.Namespace) -> Any:
    import grpc

    if args.tls_ca:
        from sealgate.cli import read_file

        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(args.tls_ca, "TLS CA"),
            private_key=read_file(args.tls_key, "TLS key") if args.tls_key else None,
            certificate_chain=read_file(args.tls_cert, "TLS cert") if args.tls_cert else None,
        )
        return grpc.secure_channel(args.server, creds)
    return grpc.insecure_channel(args.server)


def rpc_error(e: Any) -> int:
    from sealgate.cli import EXIT_REJECTED, EXIT_USAGE
    from sealgate.node.agent import error_code

    code = error_code(e)
    details = e.details() if hasattr(e, "details") else str(e)
    print(f"sealgate: {details or code}", file=sys.stderr)
    return EXIT_USAGE if e.code().name == "INVALID_ARGUMENT" else EXIT_REJECTED


def read_key_file(path: str) -> bytes:
    """32 raw bytes, or 64 hex characters (whitespace ignored); ``-`` reads stdin."""
    from sealgate.cli import read_file

    data = sys.stdin.buffer.read(1024) if path == "-" else read_file(path, "key file", limit=1024)
    if len(data) == 32:
        return data
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 32:
        raise UsageError("cli.key.bad_file", f"{path}: expected 32 raw bytes or 64 hex characters")
    return key


def safe_name(key_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key_id)


def write_secret(path: Path, data: bytes) -> None:
    """Write 0600 from the start (never briefly world-readable), atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sealgate-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

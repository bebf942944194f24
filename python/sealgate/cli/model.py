"""``sealgate model ...``: encrypt and decrypt model files (chunked AES-256-GCM)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from sealgate.cli.client import read_key_file, safe_name
from sealgate.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("model", help="encrypt/decrypt model files (chunked AES-256-GCM)")
    msub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))
    e = msub.add_parser("encrypt", help="encrypt a model file")
    e.add_argument("--key-file", required=True, help="32 raw bytes or hex; - for stdin")
    e.add_argument("--key-id", required=True)
    e.add_argument("--key-version", type=int, default=1)
    e.add_argument("--chunk-size", type=int, default=1 << 20)
    e.add_argument("--in", dest="src", required=True)
    e.add_argument("--out", dest="dst", required=True)
    e.set_defaults(handler=_model_encrypt)
    d = msub.add_parser("decrypt", help="decrypt a model file (header names key id + version)")
    g = d.add_mutually_exclusive_group(required=True)
    g.add_argument("--key-file", help="32 raw bytes or hex; - for stdin (piped from the node)")
    g.add_argument("--keys-dir", help="a node's --out directory (<key_id>@<version>.key)")
    d.add_argument("--in", dest="src", required=True)
    d.add_argument("--out", dest="dst", required=True, help="output file, or - for stdout")
    d.set_defaults(handler=_model_decrypt)


def _model_encrypt(args: argparse.Namespace) -> int:
    from sealgate.modelfile import encrypt_stream

    key = read_key_file(args.key_file)
    dst = Path(args.dst)
    try:
        with open(args.src, "rb") as src, open(dst.with_name(dst.name + ".part"), "wb") as out:
            encrypt_stream(src, out, key, args.key_id, args.key_version, args.chunk_size)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{e.filename}: {e.strerror}") from None
    os.replace(dst.with_name(dst.name + ".part"), dst)
    return 0


def _model_decrypt(args: argparse.Namespace) -> int:
    from sealgate.modelfile import ModelFileError, decrypt_stream

    fixed = read_key_file(args.key_file) if args.key_file else None

    def key_for(key_id: str, version: int) -> bytes:
        if fixed is not None:
            return fixed
        path = Path(args.keys_dir) / f"{safe_name(key_id)}@{version}.key"
        if not path.exists():
            raise ModelFileError(
                "model.key.missing", f"no key {key_id} version {version} in {args.keys_dir}"
            )
        return read_key_file(str(path))

    try:
        with open(args.src, "rb") as src:
            if args.dst == "-":
                decrypt_stream(src, sys.stdout.buffer, key_for)
                return 0
            dst = Path(args.dst)
            part = dst.with_name(dst.name + ".part")
            try:
                with open(part, "wb") as out:
                    decrypt_stream(src, out, key_for)
            except BaseException:
                with contextlib.suppress(OSError):
                    part.unlink()
                raise
            os.replace(part, dst)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{e.filename}: {e.strerror}") from None
    return 0

"""``sealgate model ...``: encrypt and decrypt model files (chunked AES-256-GCM), and hash a
model into its OMS v1.0 manifest (``model hash``)."""

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
    p = sub.add_parser("model", help="encrypt/decrypt model files; hash a model (OMS manifest)")
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
    h = msub.add_parser(
        "hash",
        help="hash a model directory or file into its OMS v1.0 manifest (JSON on stdout)",
    )
    h.add_argument("model_path", metavar="MODEL_PATH")
    h.add_argument("--hash", dest="hash_algorithm", choices=("sha256", "blake3"), default="sha256")
    h.add_argument("--method", choices=("files", "shards"), default="files")
    h.add_argument(
        "--shard-size", type=int, default=None, help="bytes per shard (default 1000000000)"
    )
    h.add_argument(
        "--ignore-paths",
        nargs="+",
        default=[],
        metavar="PATH",
        help="paths to exclude, relative to MODEL_PATH (a directory excludes its subtree)",
    )
    h.add_argument("--no-ignore-git-paths", dest="ignore_git_paths", action="store_false")
    h.add_argument("--allow-symlinks", action="store_true")
    h.add_argument("--workers", type=int, default=None, help="hashing threads (default: CPUs)")
    h.set_defaults(handler=_model_hash)


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


#: ``model hash`` failures that mean the input could not be used as given (exit 2); every
#: other manifest code is the model being refused (exit 1).
_HASH_USAGE_CODES = frozenset(
    {
        "model.manifest.unreadable",
        "model.manifest.bad_ignore_path",
        "model.manifest.bad_parameters",
    }
)


def _ignore_path_arg(model_path: str, p: str) -> str:
    """An ``--ignore-paths`` value relative to the model root (OMS v1.0 §6.2.1); an absolute
    path is accepted when it lies inside the model root."""
    if not os.path.isabs(p):
        return p
    root = os.path.realpath(model_path)
    full = os.path.realpath(p)
    if os.path.commonpath([root, full]) != root or full == root:
        raise UsageError(
            "model.manifest.bad_ignore_path", f"--ignore-paths {p!r} is not inside the model"
        )
    return os.path.relpath(full, root).replace(os.sep, "/")


def _model_hash(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_REJECTED, EXIT_USAGE, emit
    from sealgate.oms.manifest import (
        DEFAULT_SHARD_SIZE,
        ModelManifestError,
        Serialization,
        hash_model,
    )

    try:
        if args.method == "shards":
            ser = Serialization.shards(
                DEFAULT_SHARD_SIZE if args.shard_size is None else args.shard_size,
                hash_algorithm=args.hash_algorithm,
                allow_symlinks=args.allow_symlinks,
            )
        else:
            if args.shard_size is not None:
                raise UsageError("cli.usage.conflict", "--shard-size needs --method shards")
            ser = Serialization(
                hash_algorithm=args.hash_algorithm, allow_symlinks=args.allow_symlinks
            )
        ignores = [_ignore_path_arg(args.model_path, p) for p in args.ignore_paths]
        manifest = hash_model(
            args.model_path,
            ser,
            ignore_paths=ignores,
            ignore_git_paths=args.ignore_git_paths,
            workers=args.workers,
        )
    except ModelManifestError as e:
        emit({"errors": [m.as_dict() for m in e.mismatches]})
        print(f"sealgate: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_USAGE if e.code in _HASH_USAGE_CODES else EXIT_REJECTED
    except UsageError as e:
        emit({"errors": [{"code": e.code, "message": e.message}]})
        print(f"sealgate: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    emit(manifest.to_json())
    return 0

"""``sealgate model ...``: encrypt and decrypt model files (chunked AES-256-GCM), and hash a
model into its OMS v1.0 manifest (``model hash``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from sealgate.cli import model_signature
from sealgate.cli.client import read_key_file, safe_name
from sealgate.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("model", help="encrypt/decrypt model files; hash a model (OMS manifest)")
    msub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))
    e = msub.add_parser("encrypt", help="encrypt a model file or directory (file by file)")
    e.add_argument("--key-file", required=True, help="32 raw bytes or hex; - for stdin")
    e.add_argument("--key-id", required=True)
    e.add_argument("--key-version", type=int, default=1)
    e.add_argument("--chunk-size", type=int, default=1 << 20)
    bind = e.add_mutually_exclusive_group()
    bind.add_argument(
        "--model-signature",
        help="model.sig of the signed model: encrypt with the key the broker releases for it",
    )
    bind.add_argument("--root-digest", help="the signed model's root digest (hex), instead")
    e.add_argument("--in", dest="src", required=True, help="a file, or a model directory")
    e.add_argument("--out", dest="dst", required=True)
    e.set_defaults(handler=_model_encrypt)
    d = msub.add_parser(
        "decrypt", help="decrypt a model file or directory (headers name key id + version)"
    )
    g = d.add_mutually_exclusive_group(required=True)
    g.add_argument("--key-file", help="32 raw bytes or hex; - for stdin (piped from the node)")
    g.add_argument("--keys-dir", help="a node's --out directory (<key_id>@<version>.key)")
    d.add_argument(
        "--model-signature",
        help="model.sig: refuse files not encrypted for this model, and a decrypted model "
        "whose files do not match its signed manifest (nothing is left at --out then)",
    )
    d.add_argument("--in", dest="src", required=True, help="a file, or a directory of them")
    d.add_argument("--out", dest="dst", required=True, help="output file/directory, or -")
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
    model_signature.register(msub)  # verify-signature, sign


def _root_digest_arg(args: argparse.Namespace) -> bytes | None:
    """The model root digest ``--model-signature`` (its signed manifest) or ``--root-digest``
    names, or None."""
    from sealgate.node.model import read_signature, signed_manifest

    if getattr(args, "model_signature", None):
        return signed_manifest(read_signature(args.model_signature)).root_digest
    if getattr(args, "root_digest", None):
        try:
            root = bytes.fromhex(args.root_digest)
        except ValueError:
            root = b""
        if len(root) != 32:
            raise UsageError("cli.usage.bad_root_digest", "--root-digest is 64 hex characters")
        return root
    return None


def _tree(src: Path) -> list[Path]:
    """Every regular file under ``src`` (relative), refusing symlinks and special files: a
    directory of model files is encrypted and decrypted file by file."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            p = Path(dirpath, name)
            if p.is_symlink() or not p.is_file():
                raise UsageError("cli.input.not_regular", f"{p}: not a regular file")
            out.append(p.relative_to(src))
    return out


#: Kept in plaintext when a model directory is encrypted (the signature is public and is
#: what the node checks the decrypted files against).
_SIGNATURE_NAME = "model.sig"


def _model_encrypt(args: argparse.Namespace) -> int:
    from sealgate.broker.models import bound_key
    from sealgate.modelfile import encrypt_stream

    key = read_key_file(args.key_file)
    root = _root_digest_arg(args)
    if root is not None:
        # The data key the broker releases for this key version once this model is
        # registered: a file encrypted with it opens only with that release.
        key = bound_key(key, args.key_id, args.key_version, root)
    src, dst = Path(args.src), Path(args.dst)

    def one(s: Path, d: Path) -> None:
        part = d.with_name(d.name + ".part")
        try:
            with open(s, "rb") as fin, open(part, "wb") as out:
                encrypt_stream(fin, out, key, args.key_id, args.key_version, args.chunk_size, root)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
        os.replace(part, d)

    try:
        if not src.is_dir():
            one(src, dst)
            return 0
        if dst.exists() and any(dst.iterdir()):
            raise UsageError("cli.output.exists", f"{dst} exists and is not empty")
        for rel in _tree(src):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            if rel == Path(_SIGNATURE_NAME):
                shutil.copyfile(src / rel, dst / rel)
            else:
                one(src / rel, dst / rel)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{e.filename}: {e.strerror}") from None
    return 0


def _model_decrypt(args: argparse.Namespace) -> int:
    from sealgate.modelfile import ModelFileError, decrypt_stream
    from sealgate.node.model import check_model_files, read_signature, signed_manifest

    fixed = read_key_file(args.key_file) if args.key_file else None
    signed = signed_manifest(read_signature(args.model_signature)) if args.model_signature else None
    root = signed.root_digest if signed is not None else None

    def key_for(key_id: str, version: int) -> bytes:
        if fixed is not None:
            return fixed
        path = Path(args.keys_dir) / f"{safe_name(key_id)}@{version}.key"
        if not path.exists():
            raise ModelFileError(
                "model.key.missing", f"no key {key_id} version {version} in {args.keys_dir}"
            )
        return read_key_file(str(path))

    src = Path(args.src)
    try:
        if args.dst == "-":
            if src.is_dir() or signed is not None:
                raise UsageError(
                    "cli.usage.bad_output",
                    "--out - takes one file without --model-signature (the files must be "
                    "checked before anything is released to a reader)",
                )
            with open(src, "rb") as fin:
                decrypt_stream(fin, sys.stdout.buffer, key_for)
            return 0
        dst = Path(args.dst)
        if src.is_dir() and dst.exists():
            raise UsageError("cli.output.exists", f"{dst} exists")
        part = dst.with_name(dst.name + ".part")
        try:
            if src.is_dir():
                part.mkdir()
                for rel in _tree(src):
                    (part / rel).parent.mkdir(parents=True, exist_ok=True)
                    if rel == Path(_SIGNATURE_NAME):
                        shutil.copyfile(src / rel, part / rel)
                        continue
                    with open(src / rel, "rb") as fin, open(part / rel, "wb") as out:
                        decrypt_stream(fin, out, key_for, root)
            else:
                with open(src, "rb") as fin, open(part, "wb") as out:
                    decrypt_stream(fin, out, key_for, root)
            if signed is not None:
                # The decrypted files must be exactly the signed model's before they take
                # their place (a loader never sees a model that does not match).
                check_model_files(part, signed)
        except BaseException:
            _remove(part)
            raise
        os.replace(part, dst)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{e.filename}: {e.strerror}") from None
    return 0


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


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

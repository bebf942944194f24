"""``sealgate model verify-signature`` and ``sealgate model sign``: OMS v1.0 signatures.

``verify-signature`` prints exactly one JSON document, ``{"verified", "platform": "model",
"claims", "errors": [{"code", "message"}]}`` (manifest mismatches also name the ``file``),
and exits 0 verified, 1 rejected, 2 usage error or unreadable input, as the ``verify``
commands do. Claims are printed only for a model that verified.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

from sealgate.errors import UsageError

#: Manifest codes that mean the input could not be used as given (exit 2), not a refusal.
_USAGE_CODES = frozenset(
    {"model.manifest.unreadable", "model.manifest.bad_ignore_path", "model.manifest.bad_parameters"}
)
MAX_SIGNATURE_LEN = 64 << 20  # sealgate.oms.bundle.MAX_BUNDLE_LEN
MAX_PEM_LEN = 1 << 20


def register(msub: Any) -> None:
    v = msub.add_parser(
        "verify-signature",
        help="verify a model against its OMS signature (model.sig); JSON on stdout",
    )
    v.add_argument("model_path", metavar="MODEL_PATH")
    v.add_argument("--signature", required=True, metavar="FILE", help="the OMS bundle")
    g = v.add_mutually_exclusive_group(required=True)
    g.add_argument("--public-key", metavar="PEM", help="ECDSA public key (key method)")
    g.add_argument(
        "--certificate-chain",
        nargs="+",
        metavar="PEM",
        help="trusted CA certificate(s) the signing certificate must chain to",
    )
    g.add_argument("--identity", metavar="ID", help="Sigstore: the signer's SAN, exactly")
    v.add_argument("--identity-provider", metavar="URL", help="Sigstore: the OIDC issuer")
    v.add_argument(
        "--trust-root",
        metavar="FILE",
        help="Sigstore trusted_root.json (default: the one the sigstore package embeds)",
    )
    v.add_argument("--ignore-paths", nargs="+", default=[], metavar="PATH")
    v.add_argument("--at", metavar="RFC3339", help="verification time (default now)")
    v.add_argument(
        "--allow-legacy",
        action="store_true",
        help="accept pre-v1.0 encodings (model_signing v0.2 predicate and DSSE bug)",
    )
    v.set_defaults(handler=_verify_signature, json_errors=True, platform="model")

    s = msub.add_parser("sign", help="sign a model (OMS v1.0 bundle) with a key or certificate")
    s.add_argument("model_path", metavar="MODEL_PATH")
    s.add_argument("--signature", required=True, metavar="OUT", help="where to write the bundle")
    s.add_argument("--private-key", required=True, metavar="PEM", help="unencrypted ECDSA key")
    s.add_argument(
        "--certificate-chain",
        nargs="+",
        metavar="PEM",
        help="signing certificate first, then its issuers",
    )
    s.add_argument("--ignore-paths", nargs="+", default=[], metavar="PATH")
    s.add_argument("--hash", dest="hash_algorithm", choices=("sha256", "blake3"), default="sha256")
    s.set_defaults(handler=_sign)


def _signers(args: argparse.Namespace) -> list[Any]:
    from sealgate.cli import read_file
    from sealgate.oms.signers import (
        CertificateSigner,
        KeySigner,
        SigstoreSigner,
        embedded_trust_root,
    )

    if args.identity is None and (args.identity_provider or args.trust_root):
        raise UsageError(
            "cli.usage.conflict", "--identity-provider/--trust-root go with --identity"
        )
    if args.public_key:
        return [KeySigner(read_file(args.public_key, "public key", MAX_PEM_LEN))]
    if args.certificate_chain:
        pem = b"\n".join(
            read_file(p, "CA certificate", MAX_PEM_LEN) for p in args.certificate_chain
        )
        return [CertificateSigner(pem)]
    if not args.identity_provider:
        raise UsageError("cli.usage.missing", "--identity needs --identity-provider")
    if args.trust_root:
        root = read_file(args.trust_root, "trust root", MAX_PEM_LEN)
        return [SigstoreSigner(args.identity, args.identity_provider, root)]
    return [
        SigstoreSigner(
            args.identity, args.identity_provider, embedded_trust_root(), embedded_root=True
        )
    ]


def _ignore_arg(model_path: str, p: str) -> str:
    # An --ignore-paths value is relative to the model root (OMS v1.0 §6.2.1); an absolute path
    # is accepted when it lies inside the model.
    if not os.path.isabs(p):
        return p
    root = os.path.realpath(model_path)
    full = os.path.realpath(p)
    if os.path.commonpath([root, full]) != root or full == root:
        raise UsageError(
            "model.manifest.bad_ignore_path", f"--ignore-paths {p!r} is not inside the model"
        )
    return os.path.relpath(full, root).replace(os.sep, "/")


def _signature_inside(model_path: str, signature: str) -> str | None:
    """The signature's path relative to a model directory it lies in (so it is not hashed)."""
    root = os.path.realpath(model_path)
    full = os.path.realpath(signature)
    if os.path.isdir(root) and os.path.commonpath([root, full]) == root and full != root:
        return os.path.relpath(full, root).replace(os.sep, "/")
    return None


def _verify_signature(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, emit, read_file
    from sealgate.cli.times import parse_at
    from sealgate.oms.manifest import ModelManifestError
    from sealgate.oms.verify import ModelSignatureError, verify_model

    at = parse_at(args.at) if args.at else None
    signers = _signers(args)
    bundle = read_file(args.signature, "signature", MAX_SIGNATURE_LEN)
    ignores = [_ignore_arg(args.model_path, p) for p in args.ignore_paths]
    inside = _signature_inside(args.model_path, args.signature)
    if inside is not None:
        ignores.append(inside)
    doc: dict[str, Any] = {"verified": False, "platform": "model", "claims": {}, "errors": []}
    try:
        v = verify_model(
            args.model_path,
            bundle,
            signers,
            ignore_paths=ignores,
            at=at,
            allow_legacy=args.allow_legacy,
        )
    except ModelSignatureError as e:
        doc["errors"] = [{"code": c, "message": m} for c, m in e.failures]
        emit(doc)
        return EXIT_REJECTED
    except ModelManifestError as e:
        doc["errors"] = [
            {"code": m.code, "message": m.message, **({"file": m.name} if m.name else {})}
            for m in e.mismatches
        ]
        emit(doc)
        return EXIT_USAGE if e.code in _USAGE_CODES else EXIT_REJECTED
    doc["verified"] = True
    doc["claims"] = v.claims()
    emit(doc)
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    """Prints one JSON document: ``{"signed": true, ...}`` or ``{"signed": false, "errors"}``."""
    from sealgate.cli import EXIT_REJECTED, EXIT_USAGE, emit
    from sealgate.errors import SealgateError
    from sealgate.oms.manifest import ModelManifestError

    try:
        return _sign_inner(args)
    except ModelManifestError as e:
        emit({"signed": False, "errors": [m.as_dict() for m in e.mismatches]})
        return EXIT_USAGE if e.code in _USAGE_CODES else EXIT_REJECTED
    except SealgateError as e:
        emit({"signed": False, "errors": [{"code": e.code, "message": e.message}]})
        return EXIT_USAGE


def _sign_inner(args: argparse.Namespace) -> int:
    from sealgate.cli import emit, read_file
    from sealgate.oms.sign import sign_model

    key = read_file(args.private_key, "private key", MAX_PEM_LEN)
    chain = (
        b"\n".join(read_file(p, "certificate", MAX_PEM_LEN) for p in args.certificate_chain)
        if args.certificate_chain
        else None
    )
    ignores = [_ignore_arg(args.model_path, p) for p in args.ignore_paths]
    inside = _signature_inside(args.model_path, args.signature)
    if inside is not None:
        ignores.append(inside)
    bundle = sign_model(
        args.model_path,
        private_key_pem=key,
        certificate_chain_pem=chain,
        ignore_paths=ignores,
        hash_algorithm=args.hash_algorithm,
    )
    out = Path(args.signature)
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "wb") as f:
            f.write(bundle)
        os.replace(part, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            part.unlink()
        raise UsageError("cli.output.unwritable", f"{args.signature!r}: {e.strerror}") from None
    emit({"signed": True, "signature": str(out), "bytes": len(bundle)})
    return 0

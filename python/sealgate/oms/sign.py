"""Sign a model the OMS v1.0 way: a Sigstore bundle v0.3 holding a DSSE envelope over an
in-toto Statement v1 whose predicate lists every file's digest.

The bundles are what ``model_signing sign key`` / ``sign certificate`` write (and what
``model_signing verify`` accepts; tests/oms check both directions): for a key, the
verification material is ``publicKey.hint`` = hex SHA-256 of the key's SPKI PEM; for a
certificate, ``x509CertificateChain`` = the signing certificate then the rest of the chain
as given. The DSSE signature is DER ECDSA over the PAE with the hash the curve calls for.
No transparency log is involved: keyless (Fulcio/Rekor) signing needs an online OIDC flow
and is not offered here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate import pki
from sealgate.errors import ParseError, UsageError
from sealgate.oms import manifest as _manifest
from sealgate.oms.bundle import (
    IN_TOTO_PAYLOAD_TYPE,
    MEDIA_TYPES_V03,
    PREDICATE_TYPE_V1,
    STATEMENT_TYPE_V1,
    pae,
)
from sealgate.oms.signers import CURVE_HASH, MAX_PEM_LEN, check_ec_key, spki_pem

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def load_ec_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM (PKCS#8 or SEC1) ECDSA key on an OMS curve."""
    if len(pem) > MAX_PEM_LEN:
        raise UsageError("model.signer.invalid", "private key file is too large")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Never echo the input: it is a secret.
        raise UsageError(
            "model.signer.invalid", "the private key is not an unencrypted PEM key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(
            "model.signature.unsupported_key", f"{type(key).__name__} is not an ECDSA key"
        )
    check_ec_key(key.public_key(), "private key")
    return key


def statement_bytes(man: _manifest.Manifest) -> bytes:
    """The in-toto Statement v1 of a manifest: subject = model name + root digest (SHA-256
    over the resource digests in order), predicate = serialization + resources."""
    doc = {
        "_type": STATEMENT_TYPE_V1,
        "subject": [{"name": man.model_name, "digest": {"sha256": man.root_digest().hex()}}],
        "predicateType": PREDICATE_TYPE_V1,
        "predicate": {
            "serialization": man.serialization.to_predicate(),
            "resources": [r.to_predicate() for r in man.resources],
        },
    }
    return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def sign_manifest(
    man: _manifest.Manifest,
    *,
    private_key_pem: bytes,
    certificate_chain_pem: bytes | None = None,
) -> bytes:
    """The bundle JSON (UTF-8) signing ``man``."""
    key = load_ec_private_key(private_key_pem)
    pub = key.public_key()
    if certificate_chain_pem is None:
        material: dict[str, Any] = {
            "publicKey": {"hint": hashlib.sha256(spki_pem(pub)).hexdigest()},
            "tlogEntries": [],
        }
    else:
        material = {
            "x509CertificateChain": {"certificates": _chain(certificate_chain_pem, pub)},
            "tlogEntries": [],
        }
    payload = statement_bytes(man)
    sig = key.sign(
        pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(_HASHES[CURVE_HASH[pub.curve.name]]())
    )
    bundle = {
        "mediaType": MEDIA_TYPES_V03[0],
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": _b64(payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(sig)}],
        },
    }
    return json.dumps(bundle, indent=2).encode("utf-8")


def _chain(pem: bytes, pub: ec.EllipticCurvePublicKey) -> list[dict[str, str]]:
    if len(pem) > MAX_PEM_LEN:
        raise UsageError("model.signer.invalid", "certificate chain file is too large")
    try:
        ders = pki.pem_blocks(pem)
    except ParseError as e:
        raise UsageError("model.signer.invalid", e.message) from None
    if not ders:
        raise UsageError("model.signer.invalid", "no CERTIFICATE block in the chain")
    try:
        leaf = x509.load_der_x509_certificate(ders[0])
    except ValueError:
        raise UsageError("model.signer.invalid", "the signing certificate is not X.509") from None
    if leaf.public_key() != pub:
        raise UsageError(
            "model.signer.invalid",
            "the first certificate of the chain is not the private key's certificate",
        )
    return [{"rawBytes": _b64(d)} for d in ders]


def sign_model(
    model_path: str | Path,
    *,
    private_key_pem: bytes,
    certificate_chain_pem: bytes | None = None,
    ignore_paths: Sequence[str] = (),
    hash_algorithm: str = "sha256",
) -> bytes:
    """Hash the model (files method) and sign it: the bundle JSON to write as ``model.sig``.

    ``certificate_chain_pem``: the signing certificate first, then its issuers (the root may
    be left out; verifiers are given it). ``ignore_paths`` are recorded in the signature so
    verifiers apply them too.
    """
    # Load the key before hashing: a bad key should not cost a pass over the model.
    load_ec_private_key(private_key_pem)
    ser = _manifest.Serialization(hash_algorithm=hash_algorithm)
    # hash_model records the ignore paths (the caller's, .git*, model.sig) in the
    # serialization, so verifiers apply the same ones.
    man = _manifest.hash_model(model_path, ser, ignore_paths=tuple(ignore_paths))
    return sign_manifest(
        man, private_key_pem=private_key_pem, certificate_chain_pem=certificate_chain_pem
    )

"""The release gate for model keys: registered, signed models and the key bound to them.

A key whose policy has a ``model`` section (``sealgate.appraise.policy``) leaves the broker
only for a key version with a registered OpenSSF Model Signing (OMS v1.0) bundle whose
signature verifies under one of the policy's CURRENT signers, and what leaves is not the
stored key but ``bound_key``: HKDF-SHA256 (RFC 5869) of the stored key with the model's
root digest as salt. ``sealgate model encrypt --model-signature`` derives the same data key
from the operator's copy of the model key, so a key released for one model decrypts no
file encrypted for another.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealgate.errors import SealgateError, UsageError
from sealgate.storage import ModelRegistration

#: HKDF ``info`` prefix (RFC 5869 §3.2: binds the output to its use); key id and version
#: follow, length-prefixed, so a key for one (id, version) is never another's.
BINDING_LABEL = b"sealgate/v1 model-binding"
#: Bundles larger than this are refused at registration (OMS bundles of large models with
#: many files are a few MiB; the gRPC message limit binds near here too).
MAX_BUNDLE_BYTES = 16 << 20


def binding_info(key_id: str, version: int) -> bytes:
    kid = key_id.encode()
    return BINDING_LABEL + struct.pack(">H", len(kid)) + kid + struct.pack(">I", version)


def bound_key(material: bytes, key_id: str, version: int, root_digest: bytes) -> bytes:
    """The data key of ``(key_id, version)`` for the model with ``root_digest``:
    HKDF-SHA256(ikm = stored model key, salt = root digest, info = label ‖ key id ‖ version)."""
    if len(material) != 32:
        raise UsageError("model.key.bad_size", f"model keys are 32 bytes, got {len(material)}")
    if not 16 <= len(root_digest) <= 64:
        raise UsageError("model.binding.bad_digest", f"root digest of {len(root_digest)} bytes")
    hkdf = HKDF(hashes.SHA256(), 32, root_digest, binding_info(key_id, version))
    return hkdf.derive(material)


@dataclass(frozen=True)
class ModelCheck:
    """The outcome of re-checking one registration against one policy's signers."""

    ok: bool
    code: str = ""
    message: str = ""
    #: The signer identity the current policy accepts (``SignerInfo.as_dict``).
    signer: dict[str, Any] | None = None


def verify_registration(bundle: bytes, signers: Sequence[Any], at: datetime | None = None) -> Any:
    """``verify_signature`` of the bundle under ``signers`` (no files): the VerifiedSignature,
    or ModelSignatureError. Legacy encodings are never registered (no compatibility path
    on the server: ``sealgate model verify-signature --allow-legacy`` is for inspection)."""
    from sealgate.oms.verify import verify_signature

    return verify_signature(bundle, signers, at=at, allow_legacy=False)


def recheck(reg: ModelRegistration, signers: Sequence[Any]) -> ModelCheck:
    """Does the CURRENT policy still allow the registration's signer? The stored bundle is
    verified again under the policy's signers, at the time it was registered (the time the
    server saw the signature exist: a certificate signer's chain must have been valid then,
    its expiry since does not retract the model; removing the signer from the policy does).
    The registration's root digest must be what the bundle signs."""
    try:
        vs = verify_registration(
            reg.bundle, signers, at=datetime.fromtimestamp(reg.registered_at, UTC)
        )
    except SealgateError as e:
        return ModelCheck(
            False,
            "policy.model.signer_not_allowed",
            f"{reg.key_id}@{reg.version}: the registered model's signature is not accepted "
            f"by the current policy ({e.code}: {e.message[:300]})",
        )
    if vs.root_digest != reg.root_digest:
        # Only a database edited outside sealgate gets here.
        return ModelCheck(
            False,
            "policy.model.registration_invalid",
            f"{reg.key_id}@{reg.version}: the stored root digest is not the one its bundle signs",
        )
    return ModelCheck(True, signer=vs.signer.as_dict())


def signer_json(signer: dict[str, Any]) -> str:
    return json.dumps(signer, sort_keys=True, separators=(",", ":"))


__all__ = [
    "BINDING_LABEL",
    "MAX_BUNDLE_BYTES",
    "ModelCheck",
    "binding_info",
    "bound_key",
    "recheck",
    "signer_json",
    "verify_registration",
]

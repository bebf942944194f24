"""Node-side model checks: the signed manifest a node holds next to its model.

Signer trust is the server's job (the key is released only for a registered model whose
signer the key's policy allows); the node checks what it can offline: that ``model.sig`` is
a well-formed OMS v1.0 bundle whose DSSE payload is an in-toto statement over a manifest
whose root digest is the statement's subject, and that the files on disk are exactly that
manifest's (every missing, extra or changed file named). The DSSE signature itself is not
checked here: the node has no signer to check it with, and a bundle with a forged signature
names a model no registration matches, so no key is released for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sealgate.errors import UsageError
from sealgate.modelfile import MAGIC
from sealgate.oms.bundle import ModelSignatureError, parse_bundle, parse_statement
from sealgate.oms.manifest import Manifest, ModelManifestError, check, hash_model
from sealgate.oms.verify import manifest_of

#: model.sig files are read up to this size (the server's registration limit).
MAX_SIGNATURE_BYTES = 16 << 20


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    root_digest: bytes
    model_name: str


def read_signature(path: str | Path) -> bytes:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_SIGNATURE_BYTES + 1)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{p}: {e.strerror}") from None
    if len(data) > MAX_SIGNATURE_BYTES:
        raise UsageError("model.signature.too_large", f"{p}: over {MAX_SIGNATURE_BYTES} bytes")
    return data


def signed_manifest(bundle: bytes) -> SignedManifest:
    """The manifest a bundle signs, with the structural checks of module docstring (raises
    ModelSignatureError ``model.signature.*``). Legacy encodings are refused: the server
    never registers them."""
    b = parse_bundle(bundle)
    if b.legacy_media_type:
        raise ModelSignatureError(
            "model.signature.legacy_format", f"bundle media type {b.media_type} is legacy"
        )
    st = parse_statement(b.payload, allow_legacy=False)
    man = manifest_of(st)
    root = man.root_digest()
    if st.subject_digest != root:
        raise ModelSignatureError(
            "model.signature.subject_mismatch",
            f"the statement's subject digest is not the root digest {root.hex()} of its resources",
        )
    return SignedManifest(man, root, st.subject_name)


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` (a file) starts with the sealgate model-file magic."""
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def check_model_files(model_path: str | Path, signed: SignedManifest) -> None:
    """The plaintext files at ``model_path`` are exactly the signed manifest (hashed with its
    serialization and ignore paths): ModelManifestError naming each mismatching file."""
    actual = hash_model(model_path, signed.manifest.serialization)
    check(signed.manifest, actual)


__all__ = [
    "MAX_SIGNATURE_BYTES",
    "ModelManifestError",
    "ModelSignatureError",
    "SignedManifest",
    "check_model_files",
    "is_encrypted",
    "read_signature",
    "signed_manifest",
]

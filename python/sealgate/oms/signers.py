"""Who may sign a model: the three OMS signer kinds, and their policy/config form.

A policy stores signers as JSON objects (``signer_from_dict`` / ``Signer.to_dict``):

- ``{"public_key": PEM}`` — an ECDSA P-256/P-384/P-521 public key (``KeySigner``);
- ``{"ca": PEM}`` — one or more CA certificates, the trust anchors of the "certificate"
  method (``CertificateSigner``);
- ``{"identity": ..., "issuer": ..., "trust_root": JSON text?}`` — Sigstore keyless: the
  certificate's SAN and OIDC issuer, exactly, and a ``trusted_root.json`` (``SigstoreSigner``;
  without ``trust_root`` the Sigstore public-good root that the ``sigstore`` package embeds
  is used, read offline).

Objects are validated when built, so a policy with an unusable signer is refused when it is
stored, not when a model is checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate import pki
from sealgate.errors import ParseError, UsageError

#: Curves OMS allows for ECDSA (model_signing and the Sigstore protobuf ``PublicKeyDetails``
#: PKIX_ECDSA_P256/P384/P521), each with the hash its key size calls for (FIPS 186-5 §6.4).
CURVE_HASH = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}
MAX_PEM_LEN = 1 << 20
MAX_IDENTITY_LEN = 4096


def _bad(message: str) -> UsageError:
    return UsageError("model.signer.invalid", message)


def load_ec_public_key(pem: bytes, what: str = "public key") -> ec.EllipticCurvePublicKey:
    """An ECDSA public key on an OMS curve from PEM (surrounding text, as certtool writes it,
    is skipped: RFC 7468 §2) or DER SubjectPublicKeyInfo."""
    if len(pem) > MAX_PEM_LEN:
        raise _bad(f"{what} is larger than {MAX_PEM_LEN} bytes")
    try:
        blocks = pki.pem_blocks(pem, "PUBLIC KEY")
    except ParseError as e:
        raise _bad(f"{what}: {e.message}") from None
    if len(blocks) > 1:
        raise _bad(f"{what}: {len(blocks)} PUBLIC KEY blocks where one was expected")
    der = blocks[0] if blocks else pem
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise _bad(f"{what} is not a PEM or DER SubjectPublicKeyInfo") from None
    check_ec_key(key, what)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def check_ec_key(key: object, what: str) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVE_HASH:
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise UsageError(
            "model.signature.unsupported_key",
            f"{what}: {kind} is not ECDSA P-256, P-384 or P-521",
        )


def spki_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: the key's name in claims and logs."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class KeySigner:
    """A model signed with one ECDSA key (OMS "key" method)."""

    # Equal when the key is: the PEM text (line breaks, surrounding text) does not matter.
    public_key_pem: bytes = field(compare=False, repr=False)
    key: ec.EllipticCurvePublicKey = field(init=False, repr=False, compare=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        key = load_ec_public_key(self.public_key_pem)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "fingerprint", key_fingerprint(key))

    @property
    def kind(self) -> str:
        return "key"

    def describe(self) -> str:
        return f"key sha256:{self.fingerprint[:16]}"

    def to_dict(self) -> dict[str, Any]:
        return {"public_key": spki_pem(self.key).decode()}


@dataclass(frozen=True)
class CertificateSigner:
    """A model signed by a certificate that chains to one of these CAs (OMS "certificate")."""

    ca_roots_pem: bytes = field(compare=False, repr=False)
    anchors: tuple[pki.Certificate, ...] = field(init=False)  # equal when the CAs are

    def __post_init__(self) -> None:
        if len(self.ca_roots_pem) > MAX_PEM_LEN:
            raise _bad(f"CA certificates are larger than {MAX_PEM_LEN} bytes")
        try:
            # PEM with explanatory text around the blocks (RFC 7468 §2), or one DER cert.
            if b"-----BEGIN CERTIFICATE-----" in self.ca_roots_pem:
                ders = pki.pem_blocks(self.ca_roots_pem)
                certs = [pki.load_certificate(d, "CA certificate") for d in ders]
            else:
                certs = pki.load_certificates(self.ca_roots_pem, "CA certificate")
        except ParseError as e:
            raise _bad(e.message) from None
        if not certs:
            raise _bad("no CA certificate")
        object.__setattr__(self, "anchors", tuple(certs))

    @property
    def kind(self) -> str:
        return "certificate"

    def describe(self) -> str:
        return "CA " + ", ".join(pki.describe(c) for c in self.anchors)

    def to_dict(self) -> dict[str, Any]:
        return {"ca": b"".join(pki.to_pem(c.der) for c in self.anchors).decode()}


def embedded_trust_root() -> bytes:
    """The Sigstore public-good ``trusted_root.json`` shipped inside the ``sigstore`` package
    (read from the package, never fetched)."""
    base = resources.files("sigstore") / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
    return (base / "trusted_root.json").read_bytes()


@dataclass(frozen=True)
class SigstoreSigner:
    """A model signed keylessly: a Fulcio certificate for ``identity`` (SAN, exactly) from
    ``issuer`` (the OIDC issuer extension, exactly), logged in Rekor, under ``trust_root``."""

    identity: str
    issuer: str
    trust_root: bytes
    embedded_root: bool = field(default=False, compare=False)
    _root: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        for name in ("identity", "issuer"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or len(v) > MAX_IDENTITY_LEN or v != v.strip():
                raise _bad(f"Sigstore {name} must be a non-empty string without spaces around")
        if len(self.trust_root) > MAX_PEM_LEN:
            raise _bad("trust root is larger than 1 MiB")
        # Parsed once, here, so a broken trust root is refused with the policy, not per model.
        object.__setattr__(self, "_root", self._parse_root())

    def _parse_root(self) -> Any:
        from sigstore.models import TrustedRoot
        from sigstore_models.trustroot import v1 as trustroot_v1

        from sealgate.oms.bundle import ModelSignatureError, load_json

        try:
            load_json(self.trust_root, "trusted_root.json", MAX_PEM_LEN)
        except ModelSignatureError as e:
            raise UsageError("model.signature.trust_root_invalid", e.message) from None
        try:
            root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(self.trust_root))
            # Build the keyrings now: a root whose keys do not load fails here, not later.
            from sigstore._internal.trust import KeyringPurpose

            root.rekor_keyring(KeyringPurpose.VERIFY)
            root.ct_keyring(KeyringPurpose.VERIFY)
            root.get_fulcio_certs()
        except Exception as e:  # the library raises pydantic/ValueError/its own types
            raise UsageError(
                "model.signature.trust_root_invalid",
                f"trusted_root.json is unusable ({type(e).__name__})",
            ) from None
        return root

    def trusted_root(self) -> Any:
        """The parsed root (a ``sigstore.models.TrustedRoot``)."""
        return self._root

    @property
    def kind(self) -> str:
        return "sigstore"

    def describe(self) -> str:
        return f"sigstore {self.identity} via {self.issuer}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"identity": self.identity, "issuer": self.issuer}
        if not self.embedded_root:
            d["trust_root"] = self.trust_root.decode("utf-8")
        return d


Signer = KeySigner | CertificateSigner | SigstoreSigner


def signer_from_dict(d: Any) -> Signer:
    """The policy form (module docstring) → a signer; ``model.signer.invalid`` otherwise."""
    if not isinstance(d, dict):
        raise _bad("a signer is a JSON object")
    keys = set(d)

    def text(name: str) -> str:
        v = d.get(name)
        if not isinstance(v, str):
            raise _bad(f"signer field {name!r} must be a string")
        return v

    if keys == {"public_key"}:
        return KeySigner(text("public_key").encode())
    if keys == {"ca"}:
        return CertificateSigner(text("ca").encode())
    if keys in ({"identity", "issuer"}, {"identity", "issuer", "trust_root"}):
        if "trust_root" in d:
            return SigstoreSigner(text("identity"), text("issuer"), text("trust_root").encode())
        return SigstoreSigner(
            text("identity"), text("issuer"), embedded_trust_root(), embedded_root=True
        )
    raise _bad(
        "a signer is {public_key}, {ca} or {identity, issuer[, trust_root]}; got "
        + ", ".join(sorted(map(str, keys)))
    )

"""Verify OMS model signatures (OpenSSF Model Signing v1.0) offline.

``verify_signature`` checks a ``model.sig`` bundle against the signers a caller trusts and
returns the signed manifest; ``verify_model`` also hashes the model (``sealgate.oms.manifest``)
and compares. Three signer kinds (``sealgate.oms.signers``):

- key: the DSSE signature verifies under the caller's ECDSA key, with the hash its curve calls
  for; a key or key hint embedded in the bundle must be that key (it is never used to verify);
- certificate: the bundle's leaf chains, through the bundle's other certificates, to one of
  the caller's CAs at the verification time (``pki.ChainVerifier``: signatures, validity,
  basicConstraints, keyUsage on issuers) and may sign code (keyUsage digitalSignature,
  extendedKeyUsage codeSigning where present); the leaf's key verifies the DSSE signature;
- Sigstore keyless: the ``sigstore`` library (``Verifier.verify_dsse``) checks the Fulcio
  chain to the trusted root at the verified signing time, the embedded SCT, the Rekor entry
  (inclusion proof against its signed checkpoint, the signed entry timestamp) or an RFC 3161
  timestamp, and that the signing time is inside the certificate's window; sealgate checks
  the identity (SAN) and the OIDC issuer exactly, and refuses a bundle without its tlog entry.

Legacy encodings (``allow_legacy``): model_signing v0.2's predicate
``https://model_signing/Digests/v0.1`` and its broken PAE (``bundle.pae_legacy``), and
Sigstore bundle media types v0.1/v0.2. Without the switch each fails with
``model.signature.legacy_format`` / ``legacy_encoding``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from sealgate import pki
from sealgate.errors import ChainError, ParseError, SealgateError
from sealgate.oms import manifest as _manifest
from sealgate.oms.bundle import (
    IN_TOTO_PAYLOAD_TYPE,
    PREDICATE_TYPE_LEGACY,
    Bundle,
    ModelSignatureError,
    Statement,
    pae,
    pae_legacy,
    parse_bundle,
    parse_statement,
)
from sealgate.oms.signers import (
    CURVE_HASH,
    CertificateSigner,
    KeySigner,
    Signer,
    SigstoreSigner,
    key_fingerprint,
    load_ec_public_key,
    signer_from_dict,
    spki_pem,
)

__all__ = [
    "CertificateSigner",
    "KeySigner",
    "ModelSignatureError",
    "Signer",
    "SignerInfo",
    "SigstoreSigner",
    "VerifiedSignature",
    "signer_from_dict",
    "verify_model",
    "verify_signature",
]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: Signature algorithms accepted on certificates of the "certificate" method: what CAs sign
#: code-signing certificates with (RSA PKCS#1 v1.5 and PSS, ECDSA; SHA-2 only).
_CERT_ALGORITHMS = (
    "rsa-pkcs1-sha256",
    "rsa-pkcs1-sha384",
    "rsa-pkcs1-sha512",
    "rsa-pss-sha256",
    "rsa-pss-sha384",
    "rsa-pss-sha512",
    "ecdsa-sha256",
    "ecdsa-sha384",
    "ecdsa-sha512",
)
_CHAIN = pki.ChainVerifier(_CERT_ALGORITHMS, max_depth=8, memo_entries=4096)
_CHAIN_CODES = {
    "x509.chain.expired": "model.signature.certificate_expired",
    "x509.chain.not_yet_valid": "model.signature.certificate_not_yet_valid",
    "x509.chain.no_issuer": "model.signature.untrusted_certificate",
    "x509.chain.untrusted_root": "model.signature.untrusted_certificate",
    "x509.chain.no_anchors": "model.signature.untrusted_certificate",
}
_OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
_OID_ANY_EKU = "2.5.29.37.0"
#: Fulcio's OIDC issuer extensions (sigstore/fulcio ``docs/oid-info.md``): 1.1 holds the raw
#: string (deprecated), 1.8 a DER UTF8String.
_OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")  # Fulcio "SAN other name"


@dataclass(frozen=True)
class SignerInfo:
    """Who signed, as the verifier established it."""

    kind: str  # "key" | "certificate" | "sigstore"
    key_fingerprint: str  # SHA-256 of the signing key's DER SubjectPublicKeyInfo, hex
    subject: str | None = None  # certificate methods: the leaf's subject CN
    chain: tuple[str, ...] = ()  # certificate methods: SHA-256 of each DER, leaf first
    identity: str | None = None  # sigstore: the SAN that matched
    issuer: str | None = None  # sigstore: the OIDC issuer

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "key_fingerprint": self.key_fingerprint}
        if self.subject is not None:
            d["subject"] = self.subject
        if self.chain:
            d["chain"] = list(self.chain)
        if self.identity is not None:
            d["identity"] = self.identity
            d["issuer"] = self.issuer
        return d


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: what it signs and who signed it."""

    manifest: _manifest.Manifest
    root_digest: bytes
    hash_algorithm: str
    format_version: str  # "1.0" (OMS v1.0 predicate) or "0.2" (legacy Digests/v0.1)
    predicate_type: str
    model_name: str
    signer: SignerInfo
    signed_at: datetime | None  # only where the bundle proves a time (Rekor SET, RFC 3161)
    bundle_media_type: str = ""
    legacy: bool = False  # verified only through a legacy compatibility path

    @property
    def files(self) -> int:
        return self.manifest.files

    @property
    def ignore_paths(self) -> tuple[str, ...]:
        return self.manifest.serialization.ignore_paths

    def claims(self) -> dict[str, Any]:
        """The claims ``sealgate model verify-signature`` prints."""
        return {
            "root_digest": self.root_digest.hex(),
            "hash_algorithm": self.hash_algorithm,
            "files": self.files,
            "resources": len(self.manifest.resources),
            "format_version": self.format_version,
            "predicate_type": self.predicate_type,
            "model_name": self.model_name,
            "serialization": self.manifest.serialization.to_predicate(),
            "ignore_paths": list(self.ignore_paths),
            "signer": self.signer.as_dict(),
            "signed_at": _rfc3339(self.signed_at) if self.signed_at else None,
            "bundle_media_type": self.bundle_media_type,
            "legacy": self.legacy,
        }


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fail(code: str, message: str) -> ModelSignatureError:
    return ModelSignatureError(code, message)


# -- DSSE ------------------------------------------------------------------------------------


def _check_dsse(key: ec.EllipticCurvePublicKey, b: Bundle, *, allow_legacy: bool) -> bool:
    """The envelope's signature under ``key``; True when only the legacy PAE verifies."""
    if b.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _fail(
            "model.signature.payload_type",
            f"DSSE payloadType is {b.payload_type[:80]!r}, expected {IN_TOTO_PAYLOAD_TYPE}",
        )
    h = _HASHES[CURVE_HASH[key.curve.name]]
    if _ecdsa_ok(key, b.signature, pae(b.payload_type, b.payload), h()):
        return False
    # model_signing v0.2 signed pae_legacy(), and with SHA-256 whatever the curve.
    legacy = pae_legacy(b.payload_type, b.payload)
    if _ecdsa_ok(key, b.signature, legacy, h()) or _ecdsa_ok(
        key, b.signature, legacy, hashes.SHA256()
    ):
        if allow_legacy:
            return True
        raise _fail(
            "model.signature.legacy_encoding",
            "the signature verifies only over model_signing v0.2's broken DSSE encoding; "
            "accepted only with allow_legacy",
        )
    raise _fail("model.signature.signature_invalid", "the DSSE signature does not verify")


def _ecdsa_ok(
    key: ec.EllipticCurvePublicKey, sig: bytes, data: bytes, h: hashes.HashAlgorithm
) -> bool:
    try:
        key.verify(sig, data, ec.ECDSA(h))
    except (InvalidSignature, ValueError):
        return False
    return True


# -- the three signer kinds -------------------------------------------------------------------


@dataclass(frozen=True)
class _Accepted:
    info: SignerInfo
    legacy: bool
    signed_at: datetime | None
    payload: bytes


def _by_key(b: Bundle, s: KeySigner, allow_legacy: bool) -> _Accepted:
    if b.material == "publicKey":
        # model_signing >= 1.1 records the hex SHA-256 of the signer's PEM as a hint; 1.0
        # embedded the PEM. Either must name the caller's key: a bundle that says another
        # key signed it is refused even if the caller's key happens to verify.
        pem = spki_pem(s.key)
        if b.public_key_hint and b.public_key_hint.lower() != hashlib.sha256(pem).hexdigest():
            raise _fail(
                "model.signature.key_mismatch",
                f"the bundle's key hint {b.public_key_hint[:64]!r} is not {s.describe()}",
            )
        if b.public_key_raw is not None:
            try:
                embedded = load_ec_public_key(b.public_key_raw, "embedded public key")
            except SealgateError as e:
                raise _fail("model.signature.key_mismatch", e.message) from None
            if key_fingerprint(embedded) != s.fingerprint:
                raise _fail(
                    "model.signature.key_mismatch",
                    f"the bundle embeds key sha256:{key_fingerprint(embedded)[:16]}, "
                    f"not {s.describe()}",
                )
    legacy = _check_dsse(s.key, b, allow_legacy=allow_legacy)
    return _Accepted(SignerInfo("key", s.fingerprint), legacy, None, b.payload)


def _leaf_may_sign(leaf: pki.Certificate) -> None:
    # RFC 5280 §4.2.1.3 / §4.2.1.12: where present, keyUsage must allow digitalSignature and
    # extendedKeyUsage must allow codeSigning; a certificate with neither is not a signing
    # certificate by any statement of its issuer, so it is refused (as model_signing does).
    ku = leaf.key_usage
    eku = leaf.extended_key_usage
    if ku is None and eku is None:
        raise _fail(
            "model.signature.certificate_usage",
            f"{pki.describe(leaf)} has neither keyUsage nor extendedKeyUsage",
        )
    if ku is not None and not ku[0]:
        raise _fail(
            "model.signature.certificate_usage",
            f"{pki.describe(leaf)}: keyUsage lacks digitalSignature",
        )
    if eku is not None and not ({_OID_CODE_SIGNING, _OID_ANY_EKU} & set(eku)):
        raise _fail(
            "model.signature.certificate_usage",
            f"{pki.describe(leaf)}: extendedKeyUsage lacks codeSigning",
        )


def _by_certificate(b: Bundle, s: CertificateSigner, at: datetime, allow_legacy: bool) -> _Accepted:
    if b.material != "x509CertificateChain" or not b.certificates:
        raise _fail(
            "model.signature.no_certificate",
            f"the bundle carries {b.material}, not an x509CertificateChain",
        )
    try:
        certs = [
            pki.load_certificate(d, f"bundle certificate {i}") for i, d in enumerate(b.certificates)
        ]
    except ParseError as e:
        raise _fail("model.signature.malformed", e.message) from None
    leaf = certs[0]
    try:
        path = _CHAIN.build(leaf, certs[1:], s.anchors, at)
    except ChainError as e:
        raise pki_error(e) from None
    _leaf_may_sign(leaf)
    key = _ec_key_of(leaf)
    legacy = _check_dsse(key, b, allow_legacy=allow_legacy)
    info = SignerInfo(
        "certificate",
        key_fingerprint(key),
        subject=leaf.subject_cn,
        chain=tuple(c.fingerprint for c in path.certs),
    )
    return _Accepted(info, legacy, None, b.payload)


def pki_error(e: ChainError) -> ModelSignatureError:
    r = pki.remap(e, _CHAIN_CODES, "model.signature.chain_invalid")
    return ModelSignatureError(r.code, r.message)


def _ec_key_of(leaf: pki.Certificate) -> ec.EllipticCurvePublicKey:
    try:
        key = leaf.public_key()
    except ParseError as e:
        raise _fail("model.signature.unsupported_key", e.message) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVE_HASH:
        raise _fail(
            "model.signature.unsupported_key",
            f"{pki.describe(leaf)}: the signing key is not ECDSA P-256, P-384 or P-521",
        )
    return key


def _der_utf8(raw: bytes) -> str | None:
    # A DER UTF8String (X.690 §8.23: tag 0x0C, definite length). Hand-decoded: the one
    # primitive value Fulcio's v2 extensions hold, not worth an ASN.1 library dependency.
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    n, off = raw[1], 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 2 or len(raw) < 2 + k:
            return None
        n, off = int.from_bytes(raw[2 : 2 + k], "big"), 2 + k
    if off + n != len(raw):
        return None
    try:
        return raw[off:].decode("utf-8")
    except UnicodeDecodeError:
        return None


class _IdentityPolicy:
    """The ``sigstore`` VerificationPolicy sealgate gives the library: SAN and OIDC issuer,
    exactly, failing with sealgate codes (the library calls it after the chain and SCT)."""

    def __init__(self, identity: str, issuer: str) -> None:
        self.identity = identity
        self.issuer = issuer

    def verify(self, cert: x509.Certificate) -> None:
        issuers: list[str] = []
        for oid in (_OID_ISSUER_V2, _OID_ISSUER_V1):
            try:
                ext = cert.extensions.get_extension_for_oid(oid).value
            except x509.ExtensionNotFound:
                continue
            raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
            text = _der_utf8(raw) if oid == _OID_ISSUER_V2 else raw.decode("utf-8", "replace")
            issuers.append(text if text is not None else "<malformed>")
        # Both extensions, when both are present, must name the required issuer: a
        # certificate whose two issuer claims disagree is refused rather than read either way.
        if not issuers or any(i != self.issuer for i in issuers):
            raise _fail(
                "model.signature.issuer_mismatch",
                f"OIDC issuer {sorted(set(issuers)) or 'absent'} is not {self.issuer!r}",
            )
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = x509.SubjectAlternativeName([])
        names = set(san.get_values_for_type(x509.RFC822Name))
        names.update(san.get_values_for_type(x509.UniformResourceIdentifier))
        for on in san.get_values_for_type(x509.OtherName):
            if on.type_id == _OTHERNAME_SAN:
                names.add(_der_utf8(on.value) or "<malformed>")
        if self.identity not in names:
            raise _fail(
                "model.signature.identity_mismatch",
                f"certificate identities {sorted(names)} do not include {self.identity!r}",
            )


#: Substrings of the sigstore library's VerificationError messages → sealgate codes. The
#: library has one exception type; tests pin this table for the installed version, and
#: anything unmatched still fails, as ``model.signature.sigstore_invalid``.
_SIGSTORE_MESSAGES = (
    ("SCT", "model.signature.sct_invalid"),
    ("invalid log entry", "model.signature.tlog_invalid"),
    ("inclusion", "model.signature.tlog_invalid"),
    ("checkpoint", "model.signature.tlog_invalid"),
    ("log entry", "model.signature.tlog_invalid"),
    ("expired at time of signing", "model.signature.certificate_expired"),
    ("not enough sources of verified time", "model.signature.no_signing_time"),
    ("Signature is invalid", "model.signature.signature_invalid"),
    ("signature", "model.signature.signature_invalid"),
)


def _by_sigstore(b: Bundle, s: SigstoreSigner, allow_legacy: bool) -> _Accepted:
    from sigstore.errors import CertValidationError
    from sigstore.errors import Error as SigstoreLibError
    from sigstore.errors import VerificationError as SigstoreVerificationError
    from sigstore.models import Bundle as SigstoreBundle
    from sigstore.models import InvalidBundle
    from sigstore.verify import Verifier

    if b.material == "publicKey":
        raise _fail("model.signature.no_certificate", "the bundle carries a key, no certificate")
    if not b.tlog_entries:
        raise _fail(
            "model.signature.tlog_missing",
            "the bundle has no transparency-log entry (Sigstore keyless requires one)",
        )
    if b.legacy_media_type and not allow_legacy:
        raise _fail(
            "model.signature.legacy_format",
            f"bundle media type {b.media_type} is accepted only with allow_legacy",
        )
    if b.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _fail("model.signature.payload_type", f"DSSE payloadType {b.payload_type[:80]!r}")
    try:
        sb = SigstoreBundle.from_json(b.raw)
    except InvalidBundle as e:
        msg = str(e)
        code = (
            "model.signature.tlog_invalid"
            if "log entry" in msg or "inclusion" in msg or "checkpoint" in msg
            else "model.signature.malformed"
        )
        raise _fail(code, f"sigstore bundle: {msg[:300]}") from None
    except Exception as e:  # pydantic / protobuf decoding errors of hostile input
        raise _fail("model.signature.malformed", f"sigstore bundle ({type(e).__name__})") from None
    verifier = Verifier(trusted_root=s.trusted_root())
    policy = _IdentityPolicy(s.identity, s.issuer)
    try:
        ptype, payload = verifier.verify_dsse(sb, policy)
    except ModelSignatureError:
        raise
    except CertValidationError as e:
        raise _fail("model.signature.chain_invalid", f"Fulcio chain: {str(e)[:300]}") from None
    except (SigstoreVerificationError, SigstoreLibError) as e:
        msg = str(e)
        code = next(
            (c for needle, c in _SIGSTORE_MESSAGES if needle in msg),
            "model.signature.sigstore_invalid",
        )
        raise _fail(code, f"sigstore: {msg[:300]}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise _fail("model.signature.sigstore_invalid", f"sigstore ({type(e).__name__})") from None
    if ptype != b.payload_type or payload != b.payload:
        raise _fail("model.signature.malformed", "the verified payload is not the bundle's")
    cert = sb.signing_certificate
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signed_at = _verified_time(verifier, sb, b)
    leaf = pki.load_certificate(cert.public_bytes(Encoding.DER), "Fulcio certificate")
    info = SignerInfo(
        "sigstore",
        key_fingerprint(key),
        subject=leaf.subject_cn or None,
        chain=(leaf.fingerprint,),
        identity=s.identity,
        issuer=s.issuer,
    )
    return _Accepted(info, False, signed_at, payload)


# -- the API ----------------------------------------------------------------------------------


def _verified_time(verifier: Any, sb: Any, b: Bundle) -> datetime | None:
    """The earliest signing time the bundle proves: Rekor's integratedTime under its signed
    entry timestamp, or an RFC 3161 timestamp from a trusted TSA. The library establishes
    these (``Verifier._establish_time``, the times it verified the chain at) but does not
    return them from ``verify_dsse``; it is asked again here. If that internal method is
    gone in another version, the SET-covered integratedTime is reported on its own."""
    establish = getattr(verifier, "_establish_time", None)
    if callable(establish):
        try:
            times: list[datetime] = [r.time for r in establish(sb)]
        except Exception:  # already verified once; any failure here only loses the claim
            times = []
        if times:
            first: datetime = min(times)
            return first.astimezone(UTC)
    # integratedTime is covered by the signed entry timestamp (Rekor v1), not by the
    # inclusion proof: only a bundle with the SET proves it.
    entry = b.tlog_entries[0]
    if entry.has_inclusion_promise:
        return datetime.fromtimestamp(entry.integrated_time, UTC)
    return None


def verify_signature(
    bundle: bytes,
    signers: Sequence[Signer],
    *,
    at: datetime | None = None,
    allow_legacy: bool = False,
) -> VerifiedSignature:
    """Verify an OMS bundle against ``signers`` (any one suffices); no files are read.

    ``at``: the time certificate chains must be valid at (default now; the Sigstore method
    uses the signing time its log entry or timestamp proves instead). Raises
    ModelSignatureError carrying every signer's failure.
    """
    if not signers:
        raise _fail("model.signature.no_signers", "no signer to verify against")
    b = parse_bundle(bundle)
    if b.legacy_media_type and not allow_legacy:
        raise _fail(
            "model.signature.legacy_format",
            f"bundle media type {b.media_type} is accepted only with allow_legacy",
        )
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise _fail("model.signature.bad_time", "the verification time must carry a timezone")
    failures: list[tuple[str, str]] = []
    accepted: _Accepted | None = None
    for s in signers:
        try:
            if isinstance(s, KeySigner):
                accepted = _by_key(b, s, allow_legacy)
            elif isinstance(s, CertificateSigner):
                accepted = _by_certificate(b, s, when, allow_legacy)
            elif isinstance(s, SigstoreSigner):
                accepted = _by_sigstore(b, s, allow_legacy)
            else:
                raise _fail("model.signature.no_signers", f"unknown signer {type(s).__name__}")
            break
        except ModelSignatureError as e:
            failures.append((e.code, f"{s.describe()}: {e.message}"))
    if accepted is None:
        code = failures[0][0]
        raise ModelSignatureError(code, "; ".join(m for _, m in failures), failures)
    st = parse_statement(accepted.payload, allow_legacy=allow_legacy)
    man = manifest_of(st)
    root = man.root_digest()
    if st.subject_digest is not None and st.subject_digest != root:
        raise _fail(
            "model.signature.subject_mismatch",
            f"the statement's subject digest {st.subject_digest.hex()} is not the root digest "
            f"{root.hex()} of its resources",
        )
    legacy = accepted.legacy or st.predicate_type == PREDICATE_TYPE_LEGACY or b.legacy_media_type
    return VerifiedSignature(
        manifest=man,
        root_digest=root,
        hash_algorithm=man.serialization.hash_algorithm,
        format_version="0.2" if st.predicate_type == PREDICATE_TYPE_LEGACY else "1.0",
        predicate_type=st.predicate_type,
        model_name=st.subject_name,
        signer=accepted.info,
        signed_at=accepted.signed_at,
        bundle_media_type=b.media_type,
        legacy=legacy,
    )


def manifest_of(st: Statement) -> _manifest.Manifest:
    """The signed manifest of an authenticated statement (``model.signature.statement_invalid``
    carrying the manifest layer's reason when the predicate breaks its rules)."""
    try:
        if st.predicate_type == PREDICATE_TYPE_LEGACY:
            res = tuple(_manifest.Resource(n, "sha256", d) for n, d in st.legacy_resources)
            return _manifest.Manifest(st.subject_name, _manifest.Serialization(), res)
        return _manifest.manifest_from_predicate(st.subject_name, st.predicate)
    except _manifest.ModelManifestError as e:
        raise _fail("model.signature.statement_invalid", f"{e.code}: {e.message}") from None


def verify_model(
    model_path: str | Path,
    bundle: bytes,
    signers: Sequence[Signer],
    *,
    ignore_paths: Sequence[str] = (),
    at: datetime | None = None,
    allow_legacy: bool = False,
) -> VerifiedSignature:
    """``verify_signature``, then hash the model with the signed serialization and compare
    (ignore paths: the caller's and the signature's). Raises ModelSignatureError or
    ModelManifestError (naming every missing, extra or changed file)."""
    v = verify_signature(bundle, signers, at=at, allow_legacy=allow_legacy)
    # hash_model applies the signature's recorded ignore paths (they are in its
    # serialization) plus the caller's, the .git* defaults and model.sig, as model_signing
    # verify does.
    actual = _manifest.hash_model(model_path, v.manifest.serialization, ignore_paths=ignore_paths)
    _manifest.check(v.manifest, actual)
    return v
